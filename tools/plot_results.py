"""Accuracy vs runtime figure from the tools' --out_json files (drawn with OpenCV, no matplotlib needed).

    python -m tools.plot_results runtime.json vimeo_base.json vimeo_large.json snufilm_base.json --out fig.png

Runtime JSONs (tools.runtime) give each model size's latency; benchmark JSONs give its score per subset.
Every (dataset, subset) becomes one line through the model sizes it has, x = latency in ms, y = PSNR (or
--metric). A benchmark with an "all" subset (X-TEST) is drawn by that subset only, unless --subsets says
otherwise. When several files give the same point, the last one wins.
"""
import argparse
import math
import os

import cv2
import numpy as np

from core.evaluation import read_result
from core.options import MODEL_SIZES
from tools.benchmark_common import guarded

METRICS = ("psnr", "ssim", "psnr_float", "ssim_float")
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]     # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


def load_results(paths):
    """Split JSON files into (runtime: {size: latency_ms}, runtime description, benchmark list)."""
    latencies, description, benchmarks = {}, None, []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"results file not found: {path}")
        data = read_result(path)
        if data.get("tool") == "runtime":
            for size, entry in data.get("sizes", {}).items():
                latencies[size] = entry["latency_ms"]
            description = f"{data.get('device')}, {data.get('threads')} threads, {data.get('resolution')}"
        elif "subsets" in data and "dataset" in data:
            benchmarks.append(data)
        else:
            raise ValueError(f"{path} is neither a tools.runtime nor a benchmark --out_json result")
    return latencies, description, benchmarks


def collect_series(latencies, benchmarks, metric="psnr", subsets=None):
    """{"dataset/subset": [(size, latency_ms, score), ...] in model-size order} for sizes with both numbers."""
    points = {}
    for result in benchmarks:
        size = result.get("model_size")
        names = list(result["subsets"])
        if subsets:
            names = [n for n in names if n in subsets]
        elif "all" in names:
            names = ["all"]
        for name in names:
            if size in latencies:
                label = result["dataset"] if name == result["dataset"] else f"{result['dataset']}/{name}"
                points.setdefault(label, {})[size] = (latencies[size], result["subsets"][name][metric])
    order = {size: i for i, size in enumerate(MODEL_SIZES)}
    series = {label: [(size, *xy) for size, xy in sorted(by_size.items(), key=lambda kv: order.get(kv[0], 99))]
              for label, by_size in points.items()}
    if not series:
        raise ValueError("nothing to plot: no model size has both a latency (tools.runtime JSON) and a score "
                         "(benchmark JSON)")
    return series


def nice_ticks(low, high, count=6):
    """About ``count`` round tick values covering [low, high]."""
    span = max(high - low, 1e-9)
    raw = span / count
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def padded_range(values, fraction=0.1):
    low, high = min(values), max(values)
    margin = (high - low) * fraction or max(abs(high) * 0.05, 0.5)
    return low - margin, high + margin


def draw_figure(series, metric="psnr", x_label="latency (ms)", title=None, size=(960, 600)):
    """H x W x 3 uint8 BGR image of the series: lines through each size's (latency, score) point."""
    width, height = size
    left, right, top, bottom = 90, 230, 50, 70
    image = np.full((height, width, 3), 255, np.uint8)
    xs = [p[1] for pts in series.values() for p in pts]
    ys = [p[2] for pts in series.values() for p in pts]
    (x0, x1), (y0, y1) = padded_range(xs), padded_range(ys)
    to_px = lambda x, y: (int(round(left + (x - x0) / (x1 - x0) * (width - left - right))),
                          int(round(height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))))
    for tick in nice_ticks(x0, x1):
        px, _ = to_px(tick, y0)
        cv2.line(image, (px, top), (px, height - bottom), (225, 225, 225), 1)
        label = f"{tick:g}"
        cv2.putText(image, label, (px - 4 * len(label), height - bottom + 20), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for tick in nice_ticks(y0, y1):
        _, py = to_px(x0, tick)
        cv2.line(image, (left, py), (width - right, py), (225, 225, 225), 1)
        label = f"{tick:.4g}"
        cv2.putText(image, label, (left - 10 - 8 * len(label), py + 5), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    cv2.putText(image, x_label, (left, height - 20), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    y_label = {"psnr": "PSNR (dB)", "psnr_float": "PSNR float (dB)"}.get(metric, metric.upper().replace("_", " "))
    label_image = np.full((24, 8 * len(y_label) + 16, 3), 255, np.uint8)
    cv2.putText(label_image, y_label, (4, 17), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    label_image = cv2.rotate(label_image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y_start = max(0, (height - label_image.shape[0]) // 2)
    image[y_start:y_start + label_image.shape[0], 8:8 + label_image.shape[1]] = label_image[:height - y_start]
    if title:
        cv2.putText(image, title, (left, 30), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (label, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pixels = [to_px(x, y) for _, x, y in pts]
        for a, b in zip(pixels, pixels[1:]):
            cv2.line(image, a, b, color, 2, cv2.LINE_AA)
        for (size, _, _), p in zip(pts, pixels):
            cv2.circle(image, p, 5, color, -1, cv2.LINE_AA)
            cv2.putText(image, size, (p[0] + 7, p[1] - 7), FONT, 0.45, color, 1, cv2.LINE_AA)
        legend_y = top + 10 + 22 * i
        cv2.line(image, (width - right + 15, legend_y), (width - right + 40, legend_y), color, 2, cv2.LINE_AA)
        cv2.putText(image, label, (width - right + 48, legend_y + 5), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def run(argv=None):
    parser = argparse.ArgumentParser(description="Plot accuracy vs latency per model size from --out_json files.")
    parser.add_argument("results", nargs="+", help="tools.runtime and benchmark JSON files")
    parser.add_argument("--out", default="accuracy_vs_runtime.png", help="output PNG (default: %(default)s)")
    parser.add_argument("--metric", default="psnr", choices=METRICS, help="y axis (default: psnr)")
    parser.add_argument("--subsets", nargs="+", default=None, help="only these subsets (default: all; 'all' "
                                                                   "alone where a benchmark has it)")
    parser.add_argument("--title", default="UPR-Net: accuracy vs runtime")
    args = parser.parse_args(argv)
    latencies, description, benchmarks = load_results(args.results)
    series = collect_series(latencies, benchmarks, args.metric, args.subsets)
    x_label = "latency per frame (ms)" + (f", {description}" if description else "")
    image = draw_figure(series, args.metric, x_label, args.title)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, image):
        raise OSError(f"cannot write {args.out}")
    for label, pts in series.items():
        print(f"{label}: " + ", ".join(f"{size} {x:.1f} ms {y:.4g}" for size, x, y in pts))
    print(f"figure written to {os.path.abspath(args.out)}")
    return series


def main(argv=None):
    guarded(run, argv)


if __name__ == "__main__":
    main()
