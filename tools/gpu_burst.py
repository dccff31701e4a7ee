"""A prepared GPU training burst: UPR-Net base fine-tuned from the shipped weights on the training pack for a
fixed number of minutes, validated on the three held-out clips first, every few minutes and at the end.

    bash tools/gpu_train.sh --minutes 9 --out DIR                         # on the lent GPU (DIR default: $OUT)
    bash tools/gpu_train.sh --device cpu --quick --out DIR                # a few steps on the CPU (the tests)
    bash tools/gpu_train.sh --minutes 9 --resume_from state/last.pt       # a second call continues

Writes to --out: best.pkl (the best-validating weights, the starting ones included: improved only when
burst.json says so), last.pt (the training state, optimizer moments in bfloat16 to fit 16 MiB; --resume_from
continues it), validation.tsv, train.log and burst.json. Details: docs/gpu_training.md.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

from core.cli import UsageError, cli_main
from core.data.train_pack import read_pack_manifest

HELD_OUT = ("diver.mp4", "pampi_tour.mp4", "laughing_pexels.mp4")
"""The held-out clips (configs/heldout_clips_cpu.py's), by pack name: validated on, never trained on."""
RESERVE_MINUTES = 1.0
"""Of --minutes, what the final validation and collecting the files are given on a GPU."""
FILE_LIMIT = 16 * 2 ** 20
"""The largest file that comes back from the lent machine."""
VALIDATION = re.compile(r"step (\d+): validation PSNR ([\d.]+) dB, SSIM ([\d.]+)(?: \(([^)]*)\))?")
RATE = re.compile(r"step (\d+)/\d+ .*\| ([\d.]+) it/s")
QUICK_STEPS = 3
QUICK = ["--total_batch_size", "0", "--batch_size", "2", "--crop_h", "64", "--crop_w", "64",
         "--nr_data_worker", "0", "--val_stride", "200", "--log_interval", "1", "--image_interval", "1000",
         "--amp", "none", "--threads", "2", "--val_minutes", "0", "--save_interval", "2"]


def build_parser():
    p = argparse.ArgumentParser(prog="bash tools/gpu_train.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=9.0, help="the whole burst's wall time (default 9)")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-burst-out",
                   help="where the results go (default: $OUT, else gpu-burst-out)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--quick", action="store_true", help="3 tiny steps on the pack's smallest clips (tests)")
    p.add_argument("--pack", default="train_pack", help="the training pack (default train_pack)")
    p.add_argument("--videos", default="../shared/videos", help="clips to build a missing pack from")
    p.add_argument("--val", nargs="+", default=list(HELD_OUT), help="held-out pack clips (default: the three)")
    p.add_argument("--resume_from", help="a last.pt of an earlier burst: continue it")
    p.add_argument("--config", default="configs/gpu_burst.py")
    p.add_argument("--model_file", default="checkpoints/upr-base.pkl", help="starting weights")
    p.add_argument("--work", default="gpu-burst-work", help="the run's folder (frame cache, checkpoints)")
    return p


def ensure_pack(args):
    """The pack's manifest, building the pack from --videos when it is missing (needs PyAV)."""
    if not read_pack_manifest(args.pack):
        if not os.path.isdir(args.videos):
            raise UsageError(f"no training pack in {args.pack} and no clips in {args.videos} to build it from: run "
                             f"python -m tools.make_train_pack where the clips are, and carry {args.pack}")
        from core.data.train_pack import make_pack
        from core.data.video_frames import list_video_sources
        make_pack(list_video_sources([args.videos]), args.pack)
    return read_pack_manifest(args.pack)


def choose_clips(manifest, args):
    """(training clips, validation clips) as pack paths; --quick: the two shortest training clips and the
    shortest held-out one."""
    missing = [name for name in args.val if name not in manifest]
    if missing:
        raise UsageError(f"held-out clip(s) {', '.join(missing)} not in the pack {args.pack}")
    train = sorted((n for n in manifest if n not in args.val), key=lambda n: (manifest[n]["frames"], n))
    val = sorted(args.val, key=lambda n: (manifest[n]["frames"], n))
    if not train:
        raise UsageError(f"the pack {args.pack} holds no training clips besides the held-out ones")
    if args.quick:
        train, val = train[:2], val[:1]
    return [os.path.join(args.pack, n) for n in train], [os.path.join(args.pack, n) for n in val]


def train_command(args, train_clips, val_clips, minutes_left, resumed_step=0):
    command = [sys.executable, "-m", "tools.train", "--config", args.config, "--device", args.device,
               "--train_log_root", args.work, "--exp_name", "burst", "--model_file", args.model_file,
               "--video_cache", os.path.join(args.work, "video_cache"), "--validate_first",
               "--video_paths", *train_clips, "--val_video_paths", *val_clips]
    if args.quick:
        command += QUICK + ["--steps", str(resumed_step + QUICK_STEPS)]
    else:
        command += ["--max_minutes", f"{max(0.5, minutes_left - RESERVE_MINUTES):.2f}"]
    if args.resume_from:
        command += ["--resume"]
    return command


def read_log(path):
    """(validation rows [(step, psnr, ssim, gaps)], the last logged steps/s, the last step logged)."""
    rows, rate, last_step = [], None, 0
    if os.path.isfile(path):
        for line in open(path):
            if (match := VALIDATION.search(line)):
                rows.append((int(match[1]), float(match[2]), float(match[3]), match[4] or ""))
            if (match := RATE.search(line)):
                last_step, rate = int(match[1]), float(match[2])
    return rows, rate, last_step


def collect(args, exp_dir, started, previous_best):
    """Copy the results to --out and write validation.tsv and burst.json; returns the summary."""
    from core.training.state import compact_training_state
    os.makedirs(args.out, exist_ok=True)
    checkpoints = os.path.join(exp_dir, "checkpoints")
    rows, rate, last_step = read_log(os.path.join(exp_dir, "runtime.log"))
    with open(os.path.join(args.out, "validation.tsv"), "w") as f:
        f.write("step\tpsnr\tssim\tby_gap\n")
        f.writelines(f"{step}\t{psnr:.3f}\t{ssim:.4f}\t{gaps}\n" for step, psnr, ssim, gaps in rows)
    if os.path.isfile(os.path.join(exp_dir, "runtime.log")):
        shutil.copyfile(os.path.join(exp_dir, "runtime.log"), os.path.join(args.out, "train.log"))
    if os.path.isfile(os.path.join(checkpoints, "best.pkl")):
        shutil.copyfile(os.path.join(checkpoints, "best.pkl"), os.path.join(args.out, "best.pkl"))
    if os.path.isfile(os.path.join(checkpoints, "last.pt")):
        compact_training_state(os.path.join(checkpoints, "last.pt"), os.path.join(args.out, "last.pt"))
    baseline = rows[0][1] if rows and rows[0][0] == 0 else previous_best
    best = max([psnr for _, psnr, _, _ in rows] + ([previous_best] if previous_best is not None else []),
               default=None)
    import torch
    summary = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else
               "cpu", "minutes": round((time.time() - started) / 60, 2), "last_step": last_step,
               "steps_per_second": rate, "start_psnr": baseline, "best_psnr": best,
               "improved": best is not None and baseline is not None and best > baseline,
               "files": sorted(set(os.listdir(args.out)) | {"burst.json"})}
    oversized = [n for n in os.listdir(args.out) if os.path.getsize(os.path.join(args.out, n)) > FILE_LIMIT]
    if oversized:
        summary["oversized"] = oversized
    with open(os.path.join(args.out, "burst.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


@cli_main
def main(argv=None):
    started = time.time()
    args = build_parser().parse_args(argv)
    if args.minutes <= RESERVE_MINUTES and not args.quick:
        raise UsageError(f"--minutes must exceed {RESERVE_MINUTES}")
    if not os.path.isfile(args.model_file):
        raise UsageError(f"starting weights not found: {args.model_file}")
    train_clips, val_clips = choose_clips(ensure_pack(args), args)
    exp_dir = os.path.join(args.work, "burst")
    if os.path.isdir(exp_dir):
        shutil.rmtree(exp_dir)           # nothing of an earlier burst's run is reused but what --resume_from gives
    previous_best, resumed_step = None, 0
    if args.resume_from:
        import torch
        state = torch.load(args.resume_from, map_location="cpu", weights_only=True)
        previous_best, resumed_step = state["best_psnr"], state["step"]
        os.makedirs(os.path.join(exp_dir, "checkpoints"))
        shutil.copyfile(args.resume_from, os.path.join(exp_dir, "checkpoints", "last.pt"))
    minutes_left = args.minutes - (time.time() - started) / 60
    command = train_command(args, train_clips, val_clips, minutes_left, resumed_step)
    print(" ".join(command), flush=True)
    try:   # a safety net only: --max_minutes stops training in time, validating and saving
        code = subprocess.run(command, timeout=None if args.quick else max(60.0, minutes_left * 60)).returncode
    except subprocess.TimeoutExpired:
        code = 124
    summary = collect(args, exp_dir, started, previous_best)
    print(json.dumps(summary), flush=True)
    if code:
        print(f"error: tools.train exited with {code}; {args.out} holds what was saved", file=sys.stderr)
    return 1 if code else 0


if __name__ == "__main__":
    raise SystemExit(main())
