"""Steps per second of tools.train's training step, in each precision and memory format.

    python -m tools.training_speed                       # base, batch 8, 256x256 crops, 2 warm-up + 3 timed steps
    python -m tools.training_speed --model_size large --batch_size 4 --crop 224
    python -m tools.training_speed --amp bf16 --grad_clip 1 --ema_decay 0.999 --flow_loss_weight 0.1
    python -m tools.training_speed --allocator default   # glibc's default malloc instead of keeping freed memory

The step timed is the one ``tools.train`` runs (``core.training.TrainingStep``): the batch copied to the device,
the forward pass under autocast, the frame loss, the flow and matching losses when weighted, backward with the
fp16 loss scaler, the gradient norm (clipped with --grad_clip), AdamW (tools.train's learning rate and weight
decay) and the weight average (--ema_decay). Its options are tools.train's, with the same defaults: --loss_type,
--flow_loss_weight, --flow_loss_decay_steps, --matching_loss_weight, --grad_clip, --ema_decay, --amp and
--channels_last. The batch is one batch of the synthetic layered-motion dataset (``tools.train --dataset
synthetic``, whose exact flow feeds the flow and matching losses), used for every step; weights from scratch.

Modes: --amp and/or --channels_last time the one mode tools.train runs with them; without them (and without
--modes) three modes are compared: fp32 in the default memory format, fp32 channels_last and bf16 channels_last
(channels_last is the training default on the CPU); ``--modes`` picks any of fp32, bf16, fp16, each optionally
``_channels_last``. Prints the median step time of each mode and the speed-up over the first, and on CUDA the
peak memory allocated (torch.cuda.max_memory_allocated). Like ``tools.train``, keeps freed memory for reuse
(``core.device.keep_freed_memory``) unless told otherwise.

    python -m tools.training_speed --device cuda --batch_size 32 --crop 256 --modes fp32 bf16 \
        --loader_workers 8 --out_json speed.json          # the paper's batch and crop on one GPU

``--loader_workers N`` (N >= 0) also measures the data loader: samples per second that a DataLoader with N worker
processes delivers from the synthetic layered-motion dataset at the batch and crop, timed over ``--loader_batches``
batches after the first. ``--out_json`` saves the numbers.
"""
import argparse
import os
import statistics
import time

import torch

import core
from core.cli import select_device
from core.data.synthetic import SyntheticMotion
from core.device import keep_freed_memory
from core.training import AUTOCAST_DTYPES, TrainingStep, add_step_arguments, memory_format_for
from tools.train import build_parser as train_parser

MODES = {("fp32" if amp == "none" else amp) + (" channels_last" if channels_last else ""): (amp, channels_last)
         for amp in AUTOCAST_DTYPES for channels_last in (False, True)}
"""Mode name -> (--amp, --channels_last)."""
DEFAULT_MODES = ("fp32", "fp32 channels_last", "bf16 channels_last")
MODE_NAMES = {name.replace(" ", "_"): name for name in MODES}


def synthetic_batch(batch_size, crop, seed=0):
    """One training batch (on the CPU) of the synthetic dataset: frames, time, exact flow and its validity."""
    dataset = SyntheticMotion(batch_size, (crop, crop), seed=seed)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(batch_size)])
    batch.pop("skipped")
    return batch


def time_steps(args, device, amp, channels_last, batch):
    """Median seconds per training step over ``args.repeats`` timed steps after ``args.warmup`` untimed ones, for
    ``args.model_size`` with the step options of ``args`` in mode (``amp``, ``channels_last``)."""
    torch.manual_seed(args.seed)
    model = core.build_model(args.model_size).to(device)
    model = model.to(memory_format=memory_format_for(channels_last, device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.init_lr, weight_decay=args.weight_decay)
    trainer = TrainingStep.from_args(model, optimizer, argparse.Namespace(
        **{**vars(args), "amp": amp, "channels_last": channels_last}))
    model.train()
    if device.type == "cuda":
        batch = {k: v.pin_memory() for k, v in batch.items()}
    times = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        trainer({k: v.to(device, non_blocking=True) for k, v in batch.items()}, i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def loader_samples_per_second(batch_size, crop, workers, batches, device, seed=0):
    """Samples/s a DataLoader (``workers`` processes, as tools.train builds it) delivers from the synthetic
    dataset at ``crop``, over ``batches`` batches after the first (which includes starting the workers)."""
    from tools.data_speed import loader_speed
    dataset = SyntheticMotion((batches + 1) * batch_size, (crop, crop), seed=seed)
    return loader_speed(dataset, batch_size, workers, batches, seed, pin_memory=device.type == "cuda")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_size", default="base", choices=list(core.MODEL_SIZES))
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256, help="square crop side in pixels, a multiple of 32")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    add_step_arguments(p.add_argument_group("the training step (tools.train's options and defaults)"))
    train = train_parser().parse_args([])
    p.set_defaults(amp=None, init_lr=train.init_lr, weight_decay=train.weight_decay)   # amp not given: compare modes
    p.add_argument("--modes", nargs="+", choices=list(MODE_NAMES), default=None,
                   help="modes to time (default: the one of --amp / --channels_last if given, else "
                        "fp32 fp32_channels_last bf16_channels_last)")
    p.add_argument("--allocator", choices=["keep", "default"], default="keep",
                   help="keep: freed memory is reused, as in tools.train (core.device.keep_freed_memory); "
                        "default: the C library's default (large blocks mapped afresh every time)")
    p.add_argument("--loader_workers", type=int, default=-1,
                   help="also measure the data loader with this many worker processes (default: -1, off)")
    p.add_argument("--loader_batches", type=int, default=10, help="batches timed for the data loader (default: 10)")
    p.add_argument("--out_json", default=None, help="write the results here")
    return p


def chosen_modes(args, device):
    """[(name, amp, channels_last)] to time (channels_last None resolved as tools.train resolves it)."""
    if args.modes:
        return [(MODE_NAMES[m], *MODES[MODE_NAMES[m]]) for m in args.modes]
    if args.amp is None and args.channels_last is None:
        return [(name, *MODES[name]) for name in DEFAULT_MODES]
    amp = args.amp or "none"
    channels_last = memory_format_for(args.channels_last, device) == torch.channels_last
    name = next(name for name, mode in MODES.items() if mode == (amp, channels_last))
    return [(name, amp, channels_last)]


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.allocator == "keep":
        keep_freed_memory()
    if args.crop % 32:
        p.error(f"--crop must be a multiple of 32, got {args.crop}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    step_options = {k: getattr(args, k) for k in ("loss_type", "flow_loss_weight", "flow_loss_decay_steps",
                                                  "matching_loss_weight", "grad_clip", "ema_decay")}
    print(f"{args.model_size}, batch {args.batch_size} x {args.crop}x{args.crop}, {device}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} steps after {args.warmup} warm-up; "
          + ", ".join(f"{k} {v}" for k, v in step_options.items()))
    result = {"tool": "training_speed", "device": str(device), "model_size": args.model_size,
              "batch_size": args.batch_size, "crop": args.crop, "threads": torch.get_num_threads(),
              "warmup": args.warmup, "repeats": args.repeats, "step_options": step_options, "modes": {}}
    batch = synthetic_batch(args.batch_size, args.crop, args.seed)
    first = None
    for name, amp, channels_last in chosen_modes(args, device):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds = time_steps(args, device, amp, channels_last, batch)
        first = first or seconds
        entry = {"amp": amp, "channels_last": channels_last, "seconds_per_step": seconds, "steps_per_s": 1 / seconds,
                 "samples_per_s": args.batch_size / seconds, "speedup_over_first": first / seconds}
        memory = ""
        if device.type == "cuda":
            entry["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
            memory = f"  peak {entry['cuda_peak_mb']:.0f} MiB allocated"
        result["modes"][name] = entry
        print(f"{name:20s} {seconds:7.2f} s/step  {1 / seconds:6.3f} steps/s  {first / seconds:5.2f}x{memory}",
              flush=True)
    if args.loader_workers >= 0:
        rate = loader_samples_per_second(args.batch_size, args.crop, args.loader_workers, args.loader_batches, device)
        result["loader"] = {"workers": args.loader_workers, "batches": args.loader_batches, "samples_per_s": rate,
                            "batch_size": args.batch_size, "dataset": "synthetic"}
        print(f"data loader, {args.loader_workers} workers, synthetic {args.crop}x{args.crop}: {rate:.1f} samples/s "
              f"({rate / args.batch_size:.2f} batches/s of {args.batch_size})", flush=True)
    if args.out_json:
        from tools.benchmark_common import write_json
        write_json(args.out_json, result)
        print(f"results written to {os.path.abspath(args.out_json)}")
    return result


if __name__ == "__main__":
    main()
