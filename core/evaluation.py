"""The shared benchmark loop: read frames, interpolate every time of a sample in one call, score, average.

Scores (see :mod:`core.metrics`) are computed twice per predicted frame:

* ``psnr``, ``ssim``: on the prediction rounded to 8 bits, i.e. exactly what a saved PNG would score. This is
  what the field reports and what the headline numbers are.
* ``psnr_float``, ``ssim_float``: on the float prediction (clamped to [0, 1]), before rounding.

Ground truth is read as stored (8- or 16-bit) and scaled to [0, 1]. PSNR is -10 log10(MSE) per frame, capped at
100 dB for a perfect prediction; SSIM uses an 11 x 11 Gaussian window with sigma 1.5. Per-subset values are
means over frames; ``count`` is the number of frames scored (7 per scene on X-TEST), ``samples`` the number
of input pairs. ``frames`` lists every scored frame (subset, save name, scores) for paired comparisons.
"""
import json
import math
import os
import time
from collections import Counter, defaultdict

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import metrics
from .frames import FrameError, image_to_tensor, pad_multiple, read_image, tensor_to_float, write_image

SCORE_KEYS = ("psnr", "ssim", "psnr_float", "ssim_float")
_SSIM_DIRECT_LIMIT = 2 ** 22        # values per image up to which SSIM is computed in one piece
_SSIM_BAND_PIXELS = 2 ** 20         # pixels per band and channel beyond that (bounds memory at 4K)


class SampleFrames(Dataset):
    """Reads a sample's frames: {"index", "img0", "img1": 3 x H x W, "targets": T x 3 x H x W} (uint8, or
    float in [0, 1] for 16-bit files). Read errors are returned as {"index", "error": (type, message)} so
    they reach the main process as one clean message, even from worker processes."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        sample = self.samples[index]
        try:
            img0, img1 = (image_to_tensor(read_image(path), keep_uint8=True)[0] for path in (sample.frame0, sample.frame1))
            targets = [image_to_tensor(read_image(path), keep_uint8=True)[0] for path in sample.targets]
            for path, image in zip((sample.frame1, *sample.targets), (img1, *targets)):
                if image.shape != img0.shape:
                    raise FrameError(f"{path} is {image.shape[2]}x{image.shape[1]} but {sample.frame0} is "
                                     f"{img0.shape[2]}x{img0.shape[1]} (sample {sample.name})")
            return {"index": index, "img0": img0, "img1": img1, "targets": torch.stack(targets)}
        except (OSError, ValueError) as error:
            return {"index": index, "error": (type(error), str(error))}


def _keep_list(batch):
    return batch


def _stackable_groups(items, samples):
    """Split loaded samples into groups that can be stacked: same frame size, dtype, targets and times."""
    groups = defaultdict(list)
    for item in items:
        key = (tuple(item["img0"].shape), item["img0"].dtype, tuple(item["targets"].shape),
               samples[item["index"]].times)
        groups[key].append(item)
    return list(groups.values())


def ssim_memory_bounded(prediction, target):
    """:func:`core.metrics.ssim` (N x C x H x W -> N values), computed per channel in horizontal bands for
    large frames so 4K needs tens of MB instead of GBs. The result is the same mean over the valid region."""
    n, c, h, w = prediction.shape
    if c * h * w <= _SSIM_DIRECT_LIMIT:
        return metrics.ssim(prediction, target)
    window = 11
    band = max(16, _SSIM_BAND_PIXELS // w)
    valid_rows = h - window + 1
    total = torch.zeros(n, dtype=torch.float64, device=prediction.device)
    for channel in range(c):
        for start in range(0, valid_rows, band):
            rows = min(band, valid_rows - start)
            part = slice(start, start + rows + window - 1)
            value = metrics.ssim(prediction[:, channel:channel + 1, part], target[:, channel:channel + 1, part])
            total += value.double() * rows
    return (total / (c * valid_rows)).float()


def score_frames(prediction, target):
    """prediction, target: N x 3 x H x W in [0, 1] (any device). Returns {key: N float tensor on the CPU} for
    the keys in :data:`SCORE_KEYS` (8-bit rounded "psnr"/"ssim", unrounded "psnr_float"/"ssim_float")."""
    prediction = prediction.float().clamp(0, 1)
    target = target.float()
    rounded = metrics.quantize_8bit(prediction)
    return {"psnr": metrics.psnr(rounded, target).cpu(), "ssim": ssim_memory_bounded(rounded, target).cpu(),
            "psnr_float": metrics.psnr(prediction, target).cpu(),
            "ssim_float": ssim_memory_bounded(prediction, target).cpu()}


class ScoreTable:
    """Per-subset running means of the scores, in float64, and every frame's own scores."""

    def __init__(self):
        self.sums = defaultdict(lambda: dict.fromkeys(SCORE_KEYS, 0.0))
        self.frames = Counter()
        self.samples = Counter()
        self.per_frame = []

    def add_frame(self, subset, scores, name=None):
        values = {key: float(scores[key]) for key in SCORE_KEYS}
        for key in SCORE_KEYS:
            self.sums[subset][key] += values[key]
        self.frames[subset] += 1
        self.per_frame.append({"subset": subset, "name": name, **values})

    def summary(self, subset):
        count = self.frames[subset]
        means = {key: (self.sums[subset][key] / count if count else math.nan) for key in SCORE_KEYS}
        return {**means, "count": count, "samples": self.samples[subset]}

    def overall(self):
        count = sum(self.frames.values())
        means = {key: sum(s[key] for s in self.sums.values()) / count if count else math.nan for key in SCORE_KEYS}
        return {**means, "count": count, "samples": sum(self.samples.values())}


def format_scores(name, scores):
    """One summary line: subset, count, PSNR, SSIM (8-bit rounded), then the float ones."""
    return (f"{name}: {scores['count']} frames, PSNR {scores['psnr']:.3f} dB, SSIM {scores['ssim']:.5f} "
            f"(float: {scores['psnr_float']:.3f} dB, {scores['ssim_float']:.5f})")


def evaluate(interpolator, benchmark, batch_size=1, num_workers=0, save_dir=None, overall_name=None,
             progress=True, log=None, meta=None):
    """Interpolate and score every sample of a :class:`core.data.benchmark_sets.BenchmarkSet`.

    interpolator: a :class:`core.Interpolator` (or anything with ``interpolate_tensors(img0, img1, times)``
    returning (list of N x 3 x H x W frames, flow) and a ``device``). Samples are read by a DataLoader with
    ``num_workers`` processes and ``batch_size`` samples per step; samples of different sizes in one step are
    interpolated in separate calls. All times of a sample go into one call, so motion is estimated once.
    save_dir: write each 8-bit prediction as PNG under ``save_dir/<sample.save_names[i]>``.
    overall_name: also report the mean over all frames under this subset name.
    log: called with each subset's summary line as it completes (default: tqdm.write).
    Returns the result dict written by ``--out_json``: {"dataset", ..., "subsets": {name: {"psnr", "ssim",
    "psnr_float", "ssim_float", "count", "samples"}}, "frames": [{"subset", "name" (the frame's save name),
    "psnr", "ssim", "psnr_float", "ssim_float"}, ...] in reading order, "seconds", "pyr_level",
    "nr_lvl_skipped", "device", "threads", ...}.
    """
    started = time.perf_counter()
    log = log or tqdm.write
    samples = benchmark.samples
    device = torch.device(getattr(interpolator, "device", "cpu"))
    score_device = device if device.type == "cuda" else torch.device("cpu")      # MPS has no float64
    pending = Counter(sample.subset for sample in samples)
    table, pyramids = ScoreTable(), Counter()
    loader = DataLoader(SampleFrames(samples), batch_size=max(1, batch_size), num_workers=max(0, num_workers),
                        collate_fn=_keep_list, pin_memory=device.type == "cuda")
    bar = tqdm(total=len(samples), desc=benchmark.dataset, unit="sample", disable=not progress, dynamic_ncols=True)
    try:
        for items in loader:
            for item in items:
                if "error" in item:
                    error_type, message = item["error"]
                    raise error_type(message)
            for group in _stackable_groups(items, samples):
                group_samples = [samples[item["index"]] for item in group]
                times = group_samples[0].times
                img0 = tensor_to_float(torch.stack([item["img0"] for item in group]).to(device))
                img1 = tensor_to_float(torch.stack([item["img1"] for item in group]).to(device))
                targets = torch.stack([item["targets"] for item in group])        # N x T x 3 x H x W
                if hasattr(interpolator, "pyramid_for"):
                    pyramids[interpolator.pyramid_for(*img0.shape[-2:])] += 1
                frames, _ = interpolator.interpolate_tensors(img0, img1, list(times))
                for step, frame in enumerate(frames):
                    scores = score_frames(frame.to(score_device), tensor_to_float(targets[:, step].to(score_device)))
                    for n, sample in enumerate(group_samples):
                        table.add_frame(sample.subset, {key: scores[key][n] for key in SCORE_KEYS},
                                        name=sample.save_names[step])
                        if save_dir is not None:
                            write_image(os.path.join(save_dir, sample.save_names[step]),
                                        metrics.quantize_8bit(frame[n].clamp(0, 1)).cpu())
                for sample in group_samples:
                    table.samples[sample.subset] += 1
                    pending[sample.subset] -= 1
                    if pending[sample.subset] == 0:
                        log(format_scores(sample.subset, table.summary(sample.subset)))
            bar.update(len(items))
            current = samples[items[-1]["index"]].subset
            bar.set_postfix_str(f"{current} PSNR {table.summary(current)['psnr']:.2f}")
    finally:
        bar.close()

    subsets = {name: table.summary(name) for name in benchmark.subsets}
    if overall_name is not None:
        subsets[overall_name] = table.overall()
    (pyr_level, nr_lvl_skipped), _ = pyramids.most_common(1)[0] if pyramids else ((None, None), 0)
    result = {
        "dataset": benchmark.dataset,
        "data_root": benchmark.root,
        "model_size": getattr(getattr(interpolator, "model", None), "model_size", None),
        "model_file": None,
        "pyr_level": pyr_level,
        "nr_lvl_skipped": nr_lvl_skipped,
        "pad_multiple": pad_multiple(pyr_level) if pyr_level is not None else None,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "scores": "psnr/ssim: prediction rounded to 8 bits (as a saved PNG); psnr_float/ssim_float: unrounded",
        "notes": list(benchmark.notes),
        "subsets": subsets,
        "frames": table.per_frame,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if len(pyramids) > 1:
        result["pyramids"] = {f"{level}/{skipped}": count for (level, skipped), count in pyramids.items()}
    result.update(meta or {})
    return result


def read_result(path):
    """A tool's ``--out_json`` file as a dict; ValueError naming ``path`` if it is not a JSON object."""
    with open(path, encoding="utf-8") as f:
        try:
            result = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a JSON result: {error}") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path} is not a JSON result: {type(result).__name__}, not an object")
    return result


def paired_differences(frames_a, frames_b, key="psnr", by="subset"):
    """Frame-by-frame comparison of two results' ``frames`` lists (see :func:`evaluate`) of the same frames.

    by: "subset" groups by subset, "folder" by the folder of each frame's save name (e.g. one clip of SNU-FILM).
    Returns {group: {"count", "a", "b", "difference" (mean of a - b), "min", "max" (of the per-frame a - b),
    "a_better" (frames where a scores higher)}} in first-seen order. Raises ValueError unless both lists score
    the same frames in the same order.
    """
    if by not in ("subset", "folder"):
        raise ValueError(f"by must be 'subset' or 'folder', not {by!r}")
    names_a = [(f["subset"], f["name"]) for f in frames_a]
    names_b = [(f["subset"], f["name"]) for f in frames_b]
    if names_a != names_b:
        only = sorted(set(names_a) ^ set(names_b))
        detail = f"e.g. {only[0]} is in one only" if only else "the same frames in a different order"
        raise ValueError(f"the two results score different frames ({len(names_a)} vs {len(names_b)}; {detail})")
    groups = {}
    for a, b in zip(frames_a, frames_b):
        group = a["subset"] if by == "subset" else os.path.dirname(a["name"] or "")
        groups.setdefault(group, []).append((a[key], b[key]))
    table = {}
    for group, pairs in groups.items():
        differences = [x - y for x, y in pairs]
        table[group] = {"count": len(pairs), "a": sum(x for x, _ in pairs) / len(pairs),
                        "b": sum(y for _, y in pairs) / len(pairs),
                        "difference": sum(differences) / len(pairs), "min": min(differences),
                        "max": max(differences), "a_better": sum(d > 0 for d in differences)}
    return table
