"""Train UPR-Net: torchrun DDP (NCCL on CUDA, Gloo on CPU) or a single process (docs/training.md has the details).

    torchrun --nproc_per_node=4 -m tools.train --config configs/upr_base.py --data_root /data/vimeo_triplet \
        --exp_name upr-base
    python -m tools.train --config configs/own_videos_cpu.py --video_paths my_clips/ --exp_name mine

The original UPR-Net launcher form works too (it passes --local-rank; LOCAL_RANK wins when set):

    python3 -m torch.distributed.launch --nproc_per_node=4 --master_port=10000 -m tools.train --world_size=4 \
        --data_root /path/vimeo_triplet --train_log_root /path/train-log --exp_name upr-base --batch_size 8 \
        --nr_data_worker 2 [--resume True]

Several machines: torchrun --nnodes N --nproc_per_node P --rdzv_backend c10d --rdzv_endpoint HOST:PORT on each
(docs/slurm.md); only global rank 0 writes, and --resume needs <train_log_root> on a filesystem every node sees.

Values come from the defaults below, then the ``--config`` file (plain Python assignments), then the command
line. Writes ``<train_log_root>/<exp_name>/``: ``checkpoints/last.pt`` (everything needed to resume),
``checkpoints/best.pkl`` and ``last.pkl`` (weights with their model options, loadable with --model_file anywhere;
with --keep_validated_weights also ``step_<step>.pkl`` for every validated step), ``tensorboard/`` and
``runtime.log``. Checkpoints are written atomically; SIGINT/SIGTERM (or ``--stop_at_step K``) saves ``last``
and exits, and ``--resume`` continues exactly where it stopped.
"""
import argparse
import os
import sys
import time

import cv2
import torch
import torch.distributed as dist

from core import MODEL_SIZES, build_model, load_weights, save_weights
from core.checkpoint import CheckpointError
from core.data.triplets import FLOW_TEACHERS
from core.device import keep_freed_memory
from core.schedule import learning_rate
from core.training import Logger, SkipCounter, StopSignals, TrainingStep, add_step_arguments, build_datasets, \
    calibrate_feature_scale, distribute, format_gaps, link_train_log, memory_format_for, psnr_by_gap, \
    read_batches, restore_training_state, save_training_state, seed_everything, setup_distributed, stop_vote, \
    training_loader, validate, validate_run
from core.training.config import read_config, resolve_config
from core.video import DEFAULT_SCENE_THRESHOLD


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``tools.train: error: <message> (--help lists the options)``, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (--help lists the options)\n")


def parse_bool(text):
    """--resume's value: true / false (any case; also 1 / 0, yes / no)."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(str(text).lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return value


def build_parser():
    p = _Parser(prog="tools.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="Python file of NAME = value lines setting any option below")
    g = p.add_argument_group("run")
    g.add_argument("--exp_name", default="upr-base")
    g.add_argument("--train_log_root", default="../upr-train-log",
                   help="experiments go to <root>/<exp_name> (and ./train-log links to the root if absent)")
    g.add_argument("--world_size", type=int, default=None, help="processes in all (WORLD_SIZE), checked if given")
    g.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=None,
                   help="as torch.distributed.launch passes it; LOCAL_RANK wins when set")
    g.add_argument("--resume", type=parse_bool, nargs="?", const=True, default=False, metavar="True|False",
                   help="continue <exp>/checkpoints/last.pt exactly (--resume, --resume True or --resume=false)")
    g.add_argument("--stop_at_step", type=int, default=0,
                   help="stop (saving last) after step K, for staged runs; --resume continues (0: off)")
    g.add_argument("--max_minutes", type=float, default=0,
                   help="stop after this many minutes from the start, validating and saving (0: off)")
    g.add_argument("--model_file", help="start from these weights (e.g. an official .pkl) for fine-tuning")
    g.add_argument("--validate_first", action="store_true",
                   help="validate the starting weights first: best.pkl is then only written when training beats them")
    g.add_argument("--validate_only", action="store_true",
                   help="print --model_file's validation PSNR / SSIM (as logged in training), write nothing")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    g = p.add_argument_group("model")
    g.add_argument("--model_size", default="base", choices=list(MODEL_SIZES))
    g.add_argument("--pyr_level", type=int, default=3)
    g = p.add_argument_group("optimisation (paper: AdamW, 2e-4 -> 2e-5 cosine, 2000 warm-up, wd 1e-4)")
    g.add_argument("--steps", type=int, default=800_000)
    g.add_argument("--batch_size", type=int, default=8, help="per process")
    g.add_argument("--total_batch_size", type=int, default=0,
                   help="if set, batch_size = total_batch_size / world size (paper: 32)")
    g.add_argument("--init_lr", type=float, default=2e-4)
    g.add_argument("--min_lr", type=float, default=2e-5)
    g.add_argument("--warmup_steps", type=int, default=2000)
    g.add_argument("--weight_decay", type=float, default=1e-4)
    add_step_arguments(g)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="vimeo90k_triplet",
                   choices=["vimeo90k_triplet", "vimeo90k_septuplet", "videos", "synthetic"])
    g.add_argument("--data_root", help="Vimeo90K root (with sequences/ and tri_trainlist.txt)")
    g.add_argument("--video_paths", nargs="+", default=[], help="videos / frame folders for --dataset videos")
    g.add_argument("--extra_video_paths", nargs="+", default=[], help="videos: more clips, for training only")
    g.add_argument("--val_video_paths", nargs="+", default=[], help="videos: whole clips held out for validation")
    g.add_argument("--val_gaps", type=int, nargs="+", default=[1],
                   help="videos: validate on triplets (i, i+g, i+2g) for each gap g (0: still triplets)")
    g.add_argument("--video_cache", default="auto",
                   help="videos: frame cache folder ('auto': <train_log_root>/video_cache; 'none': in memory)")
    g.add_argument("--max_skip_fraction", type=float, default=0.05,
                   help="stop when more than this share of the samples drawn were unreadable")
    g.add_argument("--max_gap", type=int, default=4, help="videos: middle frame up to this far from the ends")
    g.add_argument("--val_fraction", type=float, default=0.15, help="videos: held-out last part of each clip")
    g.add_argument("--val_stride", type=int, default=4, help="videos: validate on every N-th held-out triplet")
    g.add_argument("--scene_threshold", type=float, default=DEFAULT_SCENE_THRESHOLD, help="videos: scene cuts")
    g.add_argument("--synthetic_ratio", type=float, default=0.0, help="share of synthetic layered-motion samples")
    g.add_argument("--synthetic_max_motion", type=float, default=48.0, help="pixels between frames 0 and 1")
    g.add_argument("--synthetic_min_motion", type=float, default=0.0,
                   help="> 0: layer motion of log-uniform length in [min, max] (0: uniform per axis)")
    g.add_argument("--synthetic_log_uniform_fraction", type=float, default=1.0,
                   help="with --synthetic_min_motion: share of layers moving by a log-uniform length")
    g.add_argument("--synthetic_static_fraction", type=float, default=0.0, help="share of still synthetic layers")
    g.add_argument("--flow_teacher", default="none", choices=FLOW_TEACHERS,
                   help="reference flow of real triplets for the flow and matching losses")
    g.add_argument("--crop_h", type=int, default=256)
    g.add_argument("--crop_w", type=int, default=256)
    g.add_argument("--nr_data_worker", type=int, default=2)
    g.add_argument("--val_samples", type=int, default=0, help="validate on the first N samples (0: all)")
    g = p.add_argument_group("logging")
    g.add_argument("--log_interval", type=int, default=20, help="steps between progress lines / scalars")
    g.add_argument("--image_interval", type=int, default=500, help="steps between training image logs")
    g.add_argument("--save_interval", type=int, default=1000, help="steps between validation + checkpoint")
    g.add_argument("--val_minutes", type=float, default=0,
                   help="also validate + checkpoint every this many minutes (0: off)")
    g.add_argument("--keep_validated_weights", action="store_true",
                   help="also keep the raw weights of every validated step as checkpoints/step_<step>.pkl")
    return p


def parse_args(argv=None):
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        path = resolve_config(first.config)
        if path is None:
            parser.error(f"config file not found: {first.config}")
        values = read_config(path)
        unknown = sorted(set(values) - {a.dest for a in parser._actions})
        if unknown:
            parser.error(f"{first.config}: unknown option(s) {', '.join(unknown)}")
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    if first.config:   # argparse checks choices on the command line only, not on defaults set by the config
        for action in parser._actions:
            value = getattr(args, action.dest, None)
            if action.choices is not None and value not in action.choices:
                parser.error(f"{first.config}: {action.dest} = {value!r} is not one of "
                             f"{', '.join(map(str, action.choices))}")
    return args


def load_model_file(model, path):
    """Load --model_file into ``model``; a missing, corrupt or mismatched file is a one-line error."""
    try:
        load_weights(model, path)
    except CheckpointError as error:
        raise SystemExit(f"error: --model_file: {error}") from None


def validate_weights(args, device):
    """--validate_only: score --model_file on the validation set exactly as training does, and print it."""
    if not args.model_file:
        raise SystemExit("error: --validate_only needs --model_file")
    model = build_model(args.model_size, pyr_level=args.pyr_level).to(device)
    load_model_file(model, args.model_file)
    _, val_set = build_datasets(args)
    val_psnr, val_ssim, psnrs = validate(model, val_set, args, device)
    gaps = format_gaps(psnr_by_gap(val_set, psnrs), " dB")
    print(f"{args.model_file}: validation PSNR {val_psnr:.3f} dB, SSIM {val_ssim:.4f} ({len(val_set)} samples"
          f"{'; ' + gaps if gaps else ''})")


def main(argv=None):
    started = time.time()
    args = parse_args(argv)
    keep_freed_memory()      # 1.3-1.6x faster steps on the CPU: large activations reuse freed memory
    cv2.setNumThreads(1)     # OpenCV's thread pool does not survive fork(): single-threaded before data workers
    rank, world_size, local_rank, device = setup_distributed(args)
    if args.total_batch_size:
        if args.total_batch_size % world_size:
            raise SystemExit(f"error: total batch {args.total_batch_size} is not divisible by {world_size}")
        args.batch_size = args.total_batch_size // world_size
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, rank)
    is_main = rank == 0
    if args.validate_only:
        return validate_weights(args, device)

    # ------------------------------------------------------------------------------ the experiment's folder
    exp_dir = os.path.join(args.train_log_root, args.exp_name)
    ckpt_dir = os.path.join(exp_dir, "checkpoints")
    last_path = os.path.join(ckpt_dir, "last.pt")
    if is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
        tensorboard_root = link_train_log(args.train_log_root)
    logger = Logger(exp_dir, is_main)
    logger.line(f"command: {' '.join(sys.argv)}")
    if is_main:
        logger.line(f"tensorboard --logdir={os.path.join(tensorboard_root, args.exp_name, 'tensorboard')}")
    logger.line(f"world size {world_size}, batch {args.batch_size} per process ({args.batch_size * world_size} "
                f"total), device {device}, threads {torch.get_num_threads()}, amp {args.amp}")

    # ------------------------------------------------------------------- model, optimizer, the training step
    model = build_model(args.model_size, pyr_level=args.pyr_level).to(device)
    if args.model_file:
        load_model_file(model, args.model_file)
        logger.line(f"initialised from {args.model_file}")
    model = model.to(memory_format=memory_format_for(args.channels_last, device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.init_lr, weight_decay=args.weight_decay)
    if args.ema_decay and not 0 < args.ema_decay < 1:
        raise SystemExit(f"error: --ema_decay must lie in (0, 1), got {args.ema_decay}")
    trainer = TrainingStep.from_args(model, optimizer, args)   # holds the fp16 scaler and the weight average

    step, best_psnr = 0, -1.0
    if args.resume:
        step, best_psnr = restore_training_state(last_path, trainer)
        logger.line(f"resumed from {last_path} at step {step}")

    train_set, val_set = build_datasets(args)
    if step == 0 and not args.model_file:
        # from scratch: give the features unit scale on a few validation frames (identical on every rank)
        frames = torch.stack([val_set[i]["img0"] for i in range(min(8, len(val_set)))]).to(device)
        calibrate_feature_scale(model, frames.contiguous(memory_format=trainer.memory_format))
        logger.line(f"feature scale calibrated on {len(frames)} validation frames")
    trainer.network = distribute(model, world_size, device, local_rank)
    loader, sampler, steps_per_epoch = training_loader(train_set, args, world_size, rank, device)
    logger.line(f"{len(train_set)} training samples ({steps_per_epoch} steps per epoch), "
                f"{len(val_set)} validation samples; {args.steps} steps")

    def checkpoint(validate_now):
        """Rank 0: validate (unless stopping early), keep best.pkl, write last.pt and last.pkl; all ranks wait."""
        nonlocal best_psnr
        if is_main and validate_now:
            candidates = validate_run(trainer, val_set, args, device, logger, step)
            if args.keep_validated_weights:
                save_weights(model, os.path.join(ckpt_dir, f"step_{step:06d}.pkl"))
            score, weights, which = max(candidates, key=lambda c: c[0])
            if score > best_psnr:
                best_psnr = score
                save_weights(weights, os.path.join(ckpt_dir, "best.pkl"))
                logger.line(f"step {step}: new best{which}, saved best.pkl")
        if is_main and step > 0:
            save_training_state(last_path, trainer, step, best_psnr, args)
            save_weights(trainer.kept_model, os.path.join(ckpt_dir, "last.pkl"))
        if world_size > 1:
            dist.barrier()

    # ------------------------------------------------------------------------------------- the training loop
    signals = StopSignals()     # SIGINT / SIGTERM: save and stop at the end of the step
    skips = SkipCounter(args.batch_size, args.max_skip_fraction)
    model.train()
    window_start, window_steps, start_step = time.time(), 0, step
    stop_point_reached = lambda: 0 < args.stop_at_step <= step < args.steps
    out_of_time = lambda: 0 < args.max_minutes * 60 <= time.time() - started
    if args.validate_first and step == 0:
        checkpoint(validate_now=True)       # the starting weights: the score to beat
    last_validation = time.time()
    stopping, data_failure = stop_point_reached(), False
    while step < args.steps and not stopping:
        epoch, position = divmod(step, steps_per_epoch)
        sampler.set_position(epoch, position * args.batch_size)
        for batch in read_batches(loader):
            lr = learning_rate(step, args.steps, args.init_lr, args.min_lr, args.warmup_steps)
            skips.count(batch)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            result = trainer(batch, step, lr)
            step += 1
            window_steps += 1

            if step % args.log_interval == 0 or step == args.steps:
                rate = window_steps / max(time.time() - window_start, 1e-9)
                logger.progress(step, args.steps, result, lr, rate, skips.skipped)
                window_start, window_steps = time.time(), 0
            if step % args.image_interval == 0 or step == start_step + 1:
                logger.images(step, "train/images", batch, result.prediction, result.bi_flow)

            # all processes act on the same step, on the most urgent code of any of them: 4 too many unreadable
            # samples, 3 a signal or --stop_at_step (save and stop), 2 out of time (validate, save and stop),
            # 1 time to validate (--val_minutes)
            due = 0 < args.val_minutes * 60 <= time.time() - last_validation
            vote = stop_vote(4 if skips.too_many else 3 if signals.signal is not None or stop_point_reached() else
                             2 if out_of_time() else int(due), device, world_size)
            stopping, data_failure = vote >= 2, vote == 4
            if stopping:
                reason = ("too many unreadable samples" if data_failure else
                          f"--stop_at_step {args.stop_at_step}" if stop_point_reached() else
                          f"signal {signals.signal}" if signals.signal is not None else
                          f"--max_minutes {args.max_minutes:g}" if vote == 2 else "another process was signalled")
                logger.line(f"step {step}: {reason}; saving {last_path} and stopping")
            if step % args.save_interval == 0 or step == args.steps or vote in (1, 2) or stopping:
                checkpoint(validate_now=vote <= 2)
                last_validation = time.time()
            if step >= args.steps or stopping:
                break

    if data_failure:
        logger.close()
        raise SystemExit(f"error: {skips.skipped} of the {skips.drawn} training samples drawn by this process could "
                         f"not be read (more than --max_skip_fraction {args.max_skip_fraction}); the warnings above "
                         f"name the files; {last_path} holds step {step}")
    logger.line(f"finished at step {step}; best validation PSNR {best_psnr:.3f} dB")
    logger.close()
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
