"""Seconds per training step (forward, Charbonnier + census loss, backward, AdamW) in each CPU/GPU mode.

    python -m tools.training_speed                       # base, batch 8, 256x256 crops, 2 warm-up + 3 timed steps
    python -m tools.training_speed --model_size large --batch_size 4 --crop 224
    python -m tools.training_speed --allocator default   # glibc's default malloc instead of keeping freed memory

Modes: fp32 with the default memory format, fp32 channels_last, and bf16 autocast with channels_last (what
``tools.train --amp bf16`` runs; channels_last is the training default on the CPU). Random frames and weights:
the time does not depend on them. Prints the median step time of each mode and the speed-up over the first.
Like ``tools.train``, keeps freed memory for reuse (``core.device.keep_freed_memory``) unless told otherwise.

    python -m tools.training_speed --device cuda --batch_size 32 --crop 256 --modes fp32 bf16 \
        --loader_workers 8 --out_json speed.json          # the paper's batch and crop on one GPU

``--modes`` picks modes (``bf16`` is bf16 autocast in the default memory format, the usual choice on a GPU).
``--loader_workers N`` (N >= 0) also measures the data loader: samples per second that a DataLoader with N worker
processes delivers from the synthetic layered-motion dataset (``tools.train --dataset synthetic``) at the batch
and crop, timed over ``--loader_batches`` batches after the first. ``--out_json`` saves the numbers.
"""
import argparse
import os
import statistics
import time

import torch

import core
from core.cli import select_device
from core.device import keep_freed_memory
from core.losses import frame_loss

MODES = (("fp32", False, None), ("fp32 channels_last", True, None), ("bf16 channels_last", True, torch.bfloat16),
         ("bf16", False, torch.bfloat16))
DEFAULT_MODES = ("fp32", "fp32 channels_last", "bf16 channels_last")
MODE_NAMES = {name.replace(" ", "_"): name for name, _, _ in MODES}


def time_steps(model_size, batch_size, crop, device, channels_last, autocast_dtype, warmup, repeats, seed=0):
    """Median seconds per optimisation step over ``repeats`` timed steps after ``warmup`` untimed ones."""
    torch.manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = core.build_model(model_size).to(device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    img0, img1, gt = (torch.rand(batch_size, 3, crop, crop, device=device) for _ in range(3))
    img0, img1 = (x.contiguous(memory_format=memory_format) for x in (img0, img1))
    time_period = torch.full((batch_size,), 0.5, device=device)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            prediction, _, _ = model(img0, img1, time_period)
        loss, _ = frame_loss(prediction.float(), gt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def loader_samples_per_second(batch_size, crop, workers, batches, device, seed=0):
    """Samples/s a DataLoader (``workers`` processes, as tools.train builds it) delivers from the synthetic
    dataset at ``crop``, over ``batches`` batches after the first (which includes starting the workers)."""
    from core.data.synthetic import SyntheticMotion
    from tools.data_speed import loader_speed
    dataset = SyntheticMotion((batches + 1) * batch_size, (crop, crop), seed=seed)
    return loader_speed(dataset, batch_size, workers, batches, seed, pin_memory=device.type == "cuda")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_size", default="base", choices=list(core.MODEL_SIZES))
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256, help="square crop side in pixels, a multiple of 32")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", nargs="+", choices=list(MODE_NAMES), default=[m.replace(" ", "_") for m in DEFAULT_MODES],
                   help="modes to time (default: fp32 fp32_channels_last bf16_channels_last)")
    p.add_argument("--allocator", choices=["keep", "default"], default="keep",
                   help="keep: freed memory is reused, as in tools.train (core.device.keep_freed_memory); "
                        "default: the C library's default (large blocks mapped afresh every time)")
    p.add_argument("--loader_workers", type=int, default=-1,
                   help="also measure the data loader with this many worker processes (default: -1, off)")
    p.add_argument("--loader_batches", type=int, default=10, help="batches timed for the data loader (default: 10)")
    p.add_argument("--out_json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.allocator == "keep":
        keep_freed_memory()
    if args.crop % 32:
        p.error(f"--crop must be a multiple of 32, got {args.crop}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"{args.model_size}, batch {args.batch_size} x {args.crop}x{args.crop}, {device}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} steps after {args.warmup} warm-up")
    result = {"tool": "training_speed", "device": str(device), "model_size": args.model_size,
              "batch_size": args.batch_size, "crop": args.crop, "threads": torch.get_num_threads(),
              "warmup": args.warmup, "repeats": args.repeats, "modes": {}}
    first = None
    chosen = {MODE_NAMES[m] for m in args.modes}
    for name, channels_last, dtype in MODES:
        if name not in chosen:
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = time_steps(args.model_size, args.batch_size, args.crop, device, channels_last, dtype,
                             args.warmup, args.repeats)
        first = first or seconds
        entry = {"seconds_per_step": seconds, "steps_per_s": 1 / seconds,
                 "samples_per_s": args.batch_size / seconds, "speedup_over_first": first / seconds}
        if device.type == "cuda":
            entry["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        result["modes"][name] = entry
        print(f"{name:20s} {seconds:7.2f} s/step  {1 / seconds:6.3f} steps/s  {first / seconds:5.2f}x", flush=True)
    if args.loader_workers >= 0:
        rate = loader_samples_per_second(args.batch_size, args.crop, args.loader_workers, args.loader_batches, device)
        result["loader"] = {"workers": args.loader_workers, "batches": args.loader_batches, "samples_per_s": rate,
                            "dataset": "synthetic"}
        print(f"data loader, {args.loader_workers} workers, synthetic {args.crop}x{args.crop}: {rate:.1f} samples/s "
              f"({rate / args.batch_size:.2f} batches/s)", flush=True)
    if args.out_json:
        from tools.benchmark_common import write_json
        write_json(args.out_json, result)
        print(f"results written to {os.path.abspath(args.out_json)}")
    return result


if __name__ == "__main__":
    main()
