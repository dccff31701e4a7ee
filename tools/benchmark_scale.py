"""Speed against quality of --scale: PSNR and seconds per pair at scales 1, 0.5 and 0.25, at 720p and 1080p.

    python -m tools.benchmark_scale --threads 2 --out_json scale.json
    python -m tools.benchmark_scale --scales 1 0.5 --resolutions 1280x720 --triplets 2 --device cuda

Triplets (i, i+1, i+2) of the held-out clips (configs/heldout_clips_cpu.py: diver, pampi_tour, laughing_pexels):
frames 0 and 2 predict frame 1. The clips are at most 960x540, so each frame is centre-cropped to the target's
aspect ratio and upscaled bicubically to the target size; PSNR is against the upscaled middle frame (prediction
rounded to 8 bits). Seconds per pair: the median over the pairs of interpolate_tensors (model and padding; frames
already decoded and on the device), each pair's fastest of --repeats runs. Prints a markdown table and writes JSON
(--out_json).
"""
import json
import os
import statistics
import sys
import time

import cv2
import numpy as np
import torch
from tqdm import tqdm

from core.cli import (SCALE_CHOICES, UsageError, add_model_arguments, cli_main, interpolator_from_args,
                      tool_parser)
from core.frames import image_to_tensor
from core.interpolator import REPO_ROOT
from core.metrics import psnr, quantize_8bit

HELDOUT_CONFIG = os.path.join(REPO_ROOT, "configs", "heldout_clips_cpu.py")
DEFAULT_SCALES = (1.0, 0.5, 0.25)
DEFAULT_RESOLUTIONS = ("1280x720", "1920x1080")


def heldout_clips():
    """The held-out validation clips named by configs/heldout_clips_cpu.py (val_video_paths), as absolute paths."""
    namespace = {}
    with open(HELDOUT_CONFIG) as handle:
        exec(compile(handle.read(), HELDOUT_CONFIG, "exec"), namespace)
    return [os.path.normpath(os.path.join(REPO_ROOT, path)) for path in namespace["val_video_paths"]]


def parse_resolution(text):
    """ "WIDTHxHEIGHT" -> (width, height); UsageError otherwise."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--resolutions: expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if width < 1 or height < 1:
        raise UsageError(f"--resolutions: sizes must be positive, got {text!r}")
    return width, height


def fit_to(frame, width, height):
    """H x W x 3 uint8 -> height x width x 3 uint8: the largest centred crop of the target's aspect ratio, resized
    bicubically (upscaled for the held-out clips)."""
    h, w = frame.shape[:2]
    if w * height > h * width:               # too wide: crop the width
        crop_w = round(h * width / height)
        x0 = (w - crop_w) // 2
        frame = frame[:, x0:x0 + crop_w]
    else:
        crop_h = round(w * height / width)
        y0 = (h - crop_h) // 2
        frame = frame[y0:y0 + crop_h]
    return cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=cv2.INTER_CUBIC)


def read_triplets(path, count):
    """``count`` triplets (i, i+1, i+2) of RGB uint8 frames spread evenly over the clip: (index, [f0, f1, f2])."""
    from core.video import VideoReader      # PyAV only here: measure() runs on decoded frames without it

    with VideoReader(path) as reader:
        frames = list(reader)          # the held-out clips are short (at most a few hundred small frames)
    if len(frames) < 3:
        raise UsageError(f"{path}: fewer than 3 frames")
    starts = sorted({int(round(s)) for s in np.linspace(0, len(frames) - 3, count + 2)[1:-1]}) if count else []
    return [(i, frames[i:i + 3]) for i in starts]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(interpolator, triplets, resolutions, scales, repeats=1, progress=True):
    """Run every triplet at every resolution and scale, ``repeats`` times (the scales in turn, their order rotated
    each round, so that a busy machine slows them alike; a pair's time is its fastest run). Returns a list of
    rows, one per (resolution, scale): {"resolution", "scale", "pyramid", "pairs", "psnr", "psnr_per_clip",
    "seconds_per_pair" (median over the pairs), "seconds" (per pair)}."""
    device = interpolator.device
    rows = {(res, s): {"resolution": f"{res[0]}x{res[1]}", "scale": s, "pairs": 0, "psnr_values": [],
                       "per_clip": {}, "seconds": []} for res in resolutions for s in scales}
    total = len(triplets) * len(resolutions) * len(scales) * repeats
    bar = tqdm(total=total, desc="pairs", unit="pair", disable=not progress, file=sys.stderr)
    for (width, height) in resolutions:
        for clip, index, frames in triplets:
            img0, gt, img1 = (image_to_tensor(fit_to(f, width, height)) for f in frames)
            img0, img1 = img0.to(device), img1.to(device)
            fastest = {}
            for round_ in range(repeats):
                shift = round_ % len(scales)
                for scale in scales[shift:] + scales[:shift]:
                    interpolator.scale = scale
                    _sync(device)
                    start = time.perf_counter()
                    frames_out, _ = interpolator.interpolate_tensors(img0, img1, [0.5])
                    _sync(device)
                    seconds = time.perf_counter() - start
                    fastest[scale] = min(seconds, fastest.get(scale, seconds))
                    bar.update(1)
                    if round_:
                        continue
                    value = psnr(quantize_8bit(frames_out[0].float().cpu()), gt)[0].item()
                    row = rows[((width, height), scale)]
                    row["pyramid"] = list(interpolator.pyramid_for(height, width))
                    row["pairs"] += 1
                    row["psnr_values"].append(value)
                    row["per_clip"].setdefault(clip, []).append(value)
            for scale, seconds in fastest.items():
                rows[((width, height), scale)]["seconds"].append(seconds)
    bar.close()
    result = []
    for row in rows.values():
        result.append({"resolution": row["resolution"], "scale": row["scale"], "pyramid": row["pyramid"],
                       "pairs": row["pairs"], "psnr": statistics.fmean(row["psnr_values"]),
                       "psnr_per_clip": {clip: statistics.fmean(v) for clip, v in row["per_clip"].items()},
                       "seconds_per_pair": statistics.median(row["seconds"]), "seconds": row["seconds"]})
    return result


def markdown_table(rows):
    """The rows of :func:`measure` as a markdown table; speed-up and PSNR change against scale 1 of the same
    resolution where it was measured."""
    lines = ["| resolution | --scale | pyramid (L, skipped) | PSNR (dB) | vs 1x (dB) | s / pair (median) | speed-up |",
             "|---|---|---|---|---|---|---|"]
    base = {row["resolution"]: row for row in rows if row["scale"] == 1.0}
    for row in rows:
        ref = base.get(row["resolution"])
        delta = f"{row['psnr'] - ref['psnr']:+.2f}" if ref else "-"
        speed = f"{ref['seconds_per_pair'] / row['seconds_per_pair']:.2f}x" if ref else "-"
        lines.append(f"| {row['resolution']} | {row['scale']:g} | {tuple(row['pyramid'])} | {row['psnr']:.2f} | "
                     f"{delta} | {row['seconds_per_pair']:.2f} | {speed} |")
    return "\n".join(lines)


def build_parser():
    parser = tool_parser("python -m tools.benchmark_scale", __doc__, "docs/benchmarks.md#speed-against-quality-scale")
    parser.add_argument("--clips", nargs="+", default=None, metavar="VIDEO",
                        help="videos to take triplets from (default: the held-out clips)")
    parser.add_argument("--triplets", type=int, default=3, metavar="N", help="triplets per clip (default: 3)")
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES), metavar="S",
                        help="scales to compare (default: 1 0.5 0.25)")
    parser.add_argument("--resolutions", nargs="+", default=list(DEFAULT_RESOLUTIONS), metavar="WxH",
                        help="target sizes (default: 1280x720 1920x1080)")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="runs of each pair and scale, in turn; its time is the fastest (default: 1)")
    parser.add_argument("--out_json", default=None, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_model_arguments(parser, pyramid=False)
    return parser


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.scale != 1.0:
        raise UsageError("this tool compares --scales; --scale is not used here")
    if args.triplets < 1 or args.repeats < 1:
        raise UsageError(f"--triplets and --repeats must be at least 1, got {args.triplets} and {args.repeats}")
    bad = [s for s in args.scales if s not in SCALE_CHOICES]
    if bad:
        raise UsageError(f"--scales must be among 1, 0.5, 0.25, 0.125, got {bad[0]:g}")
    resolutions = [parse_resolution(text) for text in args.resolutions]
    clips = args.clips or heldout_clips()
    triplets = []
    for path in clips:
        name = os.path.splitext(os.path.basename(path))[0]
        triplets += [(name, index, frames) for index, frames in read_triplets(path, args.triplets)]
    interpolator = interpolator_from_args(args)
    warm = torch.rand(1, 3, 64, 64)          # first-call costs (kernel loading) outside the timings
    interpolator.interpolate_tensors(warm, warm.flip(-1))
    rows = measure(interpolator, triplets, resolutions, list(args.scales), args.repeats, progress=not args.no_progress)
    result = {"device": str(interpolator.device), "threads": torch.get_num_threads(),
              "precision": interpolator.precision, "compile": bool(interpolator.compile), "repeats": args.repeats,
              "model": interpolator.model.model_size,
              "triplets": [[name, index] for name, index, _ in triplets], "rows": rows}
    print(markdown_table(rows))
    if args.out_json:
        with open(args.out_json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
