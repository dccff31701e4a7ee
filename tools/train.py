"""Train UPR-Net: torchrun DDP (NCCL on CUDA, Gloo on CPU) or a single process.

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
``checkpoints/best.pkl`` and ``last.pkl`` (weights only, loadable with --model_file anywhere; with
--keep_validated_weights also ``step_<step>.pkl`` for every validated step), ``tensorboard/`` and
``runtime.log``. Checkpoints are written atomically; SIGINT/SIGTERM (or ``--stop_at_step K``) saves ``last``
and exits, and ``--resume`` continues exactly where it stopped.
"""
import argparse
import datetime
import os
import random
import runpy
import signal
import sys
import time

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from core import build_model, load_weights, save_weights
from core.model.upr_net import calibrate_feature_scale
from core.checkpoint import CheckpointError, atomic_save, strip_prefix
from core.data import EpochIndexSampler, KeyedConcat, SyntheticMotion, VideoTriplets, Vimeo90KSeptuplets, \
    Vimeo90KTriplets
from core.data.synthetic import skimage_textures
from core.data.video_cache import FrameRefs
from core.data.triplets import FLOW_TEACHERS, UnreadableDataError
from core.device import keep_freed_memory
from core.flow_viz import flow_to_color
from core.frames import pad_multiple, pad_to_multiple
from core.losses import LOSS_TYPES, flow_supervision, frame_loss, matching
from core.metrics import psnr, ssim
from core.schedule import learning_rate
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
                   help="experiments go to <root>/<exp_name>; a ./train-log symlink to the root is made when "
                        "./train-log does not exist (tensorboard --logdir=./train-log/<exp_name>/tensorboard)")
    g.add_argument("--world_size", type=int, default=None,
                   help="number of processes in all; set by the launcher (WORLD_SIZE), checked if given")
    g.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=None,
                   help="this process's index on its machine, as torch.distributed.launch passes it; the "
                        "LOCAL_RANK environment variable wins when set")
    g.add_argument("--resume", type=parse_bool, nargs="?", const=True, default=False, metavar="True|False",
                   help="continue <exp>/checkpoints/last.pt exactly (--resume, --resume True or --resume=false)")
    g.add_argument("--stop_at_step", type=int, default=0,
                   help="stop (saving last) after step K, for staged runs; --resume continues (0: off)")
    g.add_argument("--model_file", help="start from these weights (e.g. an official .pkl) for fine-tuning")
    g.add_argument("--validate_only", action="store_true",
                   help="print --model_file's validation PSNR / SSIM (as logged during training) and exit; "
                        "writes nothing")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    g = p.add_argument_group("model")
    g.add_argument("--model_size", default="base", choices=["base", "large", "LARGE"])
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
    g.add_argument("--grad_clip", type=float, default=0.0, help="max gradient norm (0: off)")
    g.add_argument("--ema_decay", type=float, default=0.0,
                   help="keep an exponential moving average of the weights (e.g. 0.999: a horizon of ~1,000 "
                        "steps); last.pkl then holds the average, and best.pkl the best-validating of the average "
                        "and the raw weights (0: off)")
    g.add_argument("--loss_type", default="charbonnier+census", choices=LOSS_TYPES)
    g.add_argument("--flow_loss_weight", type=float, default=0.0,
                   help="weight of flow supervision (exact flow of synthetic data, --flow_teacher on real data)")
    g.add_argument("--flow_loss_decay_steps", type=int, default=0,
                   help="flow weight decays linearly to 0 over this many steps (0: constant)")
    g.add_argument("--matching_loss_weight", type=float, default=0.0,
                   help="weight of the feature-matching loss: cross-entropy of the finest level's correlation "
                        "volume against the reference flow (same references as --flow_loss_weight; 0: off)")
    g.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="autocast precision; 'none' is exact float32")
    g.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last tensors (default: on for the CPU, where oneDNN convolutions are ~1.5x faster)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="vimeo90k_triplet",
                   choices=["vimeo90k_triplet", "vimeo90k_septuplet", "videos", "synthetic"])
    g.add_argument("--data_root", help="Vimeo90K root (with sequences/ and tri_trainlist.txt)")
    g.add_argument("--video_paths", nargs="+", default=[], help="videos / frame folders for --dataset videos")
    g.add_argument("--extra_video_paths", nargs="+", default=[],
                   help="videos: more clips used whole for training; none of their frames validate, so the "
                        "validation set stays that of --video_paths")
    g.add_argument("--val_video_paths", nargs="+", default=[],
                   help="videos: whole clips held out for validation (never trained on; left out of --video_paths "
                        "if listed there too); without them the tails of --video_paths validate")
    g.add_argument("--val_gaps", type=int, nargs="+", default=[1],
                   help="videos: validate on triplets (i, i+g, i+2g) for each gap g (e.g. 1 4: small and large motion; "
                        "0: still triplets, the frame itself is the answer)")
    g.add_argument("--video_cache", default="auto",
                   help="videos: folder of the on-disk frame cache read lazily by the data workers (see "
                        "tools.prepare_videos); 'auto': <train_log_root>/video_cache; 'none': decode into memory")
    g.add_argument("--max_skip_fraction", type=float, default=0.05,
                   help="stop when more than this share of the samples drawn so far were unreadable (each one is "
                        "skipped with a warning naming the file)")
    g.add_argument("--max_gap", type=int, default=4, help="videos: middle frame up to this far from the ends")
    g.add_argument("--val_fraction", type=float, default=0.15, help="videos: the last part of each clip is held out for validation")
    g.add_argument("--val_stride", type=int, default=4,
                   help="videos: validate on every N-th consecutive triplet of the held-out tails (1: all of them)")
    g.add_argument("--scene_threshold", type=float, default=DEFAULT_SCENE_THRESHOLD,
                   help="videos: scene-cut threshold (see core.video.scene_cut_score)")
    g.add_argument("--synthetic_ratio", type=float, default=0.0,
                   help="fraction of training samples from the synthetic layered-motion generator")
    g.add_argument("--synthetic_max_motion", type=float, default=48.0, help="pixels between frames 0 and 1")
    g.add_argument("--synthetic_min_motion", type=float, default=0.0,
                   help="0: layer motion uniform in [-max, max] per axis; > 0: its length log-uniform in "
                        "[min, max] pixels (many more occlusions at small displacements)")
    g.add_argument("--synthetic_log_uniform_fraction", type=float, default=1.0,
                   help="with --synthetic_min_motion > 0: share of layers moving by a log-uniform length, the "
                        "rest uniform per axis (0.5 keeps large motions common)")
    g.add_argument("--synthetic_static_fraction", type=float, default=0.0,
                   help="share of synthetic layers that do not move (static backgrounds, still objects, now and "
                        "then a still triplet): teaches the synthesis to leave unmoving pixels as they are")
    g.add_argument("--flow_teacher", default="none", choices=FLOW_TEACHERS,
                   help="reference flow for real triplets, used by --flow_loss_weight and --matching_loss_weight: "
                        "OpenCV DIS everywhere, or only where its forward and backward flows agree")
    g.add_argument("--crop_h", type=int, default=256)
    g.add_argument("--crop_w", type=int, default=256)
    g.add_argument("--nr_data_worker", type=int, default=2)
    g.add_argument("--val_samples", type=int, default=0, help="validate on the first N samples (0: all)")
    g = p.add_argument_group("logging")
    g.add_argument("--log_interval", type=int, default=20, help="steps between progress lines / scalars")
    g.add_argument("--image_interval", type=int, default=500, help="steps between training image logs")
    g.add_argument("--save_interval", type=int, default=1000, help="steps between validation + checkpoint")
    g.add_argument("--keep_validated_weights", action="store_true",
                   help="also keep the trained (raw) weights of every validated step as "
                        "checkpoints/step_<step>.pkl, e.g. for tools.greedy_soup")
    return p


def parse_args(argv=None):
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        if not os.path.isfile(first.config):
            parser.error(f"config file not found: {first.config}")
        values = {k: v for k, v in runpy.run_path(first.config).items() if not k.startswith("_")}
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known)
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


# ----------------------------------------------------------------------------------------------------------
# distributed set-up


def process_ranks(args, environ=None):
    """(rank, world_size, local_rank) of this process from the launcher's environment (torchrun and
    torch.distributed.launch set RANK, WORLD_SIZE and LOCAL_RANK; the latter also passes --local-rank, used when
    LOCAL_RANK is not set). A --world_size that differs from WORLD_SIZE is a one-line error."""
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", 1))
    rank = int(environ.get("RANK", 0))
    local_rank = int(environ["LOCAL_RANK"]) if "LOCAL_RANK" in environ else (args.local_rank or 0)
    if args.world_size is not None and args.world_size != world_size:
        launched = (f"the launcher started {world_size} (WORLD_SIZE)" if "WORLD_SIZE" in environ else
                    "1 process was started (WORLD_SIZE is not set)")
        raise SystemExit(f"error: --world_size {args.world_size} but {launched}: launch {args.world_size} in all, "
                         f"e.g. torchrun --nproc_per_node={args.world_size} -m tools.train ... (over several "
                         f"machines: --nnodes x --nproc_per_node = {args.world_size})")
    if not 0 <= rank < world_size:
        raise SystemExit(f"error: RANK {rank} is outside [0, WORLD_SIZE {world_size})")
    return rank, world_size, local_rank


def setup_distributed(args):
    """Returns (rank, world_size, local_rank, device); joins the process group (NCCL on CUDA, else Gloo) when
    more than one process was launched. The rendezvous (MASTER_ADDR / MASTER_PORT) comes from the launcher."""
    rank, world_size, local_rank = process_ranks(args)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return rank, world_size, local_rank, device


def link_train_log(train_log_root):
    """Rank 0: make ./train-log point at ``train_log_root`` unless ./train-log exists, so that
    ``tensorboard --logdir=./train-log/<exp_name>/tensorboard`` (the original README's command) finds the run.
    Returns the TensorBoard folder prefix to show: ./train-log when it leads to the root, else the root."""
    link = "train-log"
    if not os.path.lexists(link):
        os.symlink(train_log_root, link)
    if os.path.realpath(link) == os.path.realpath(train_log_root):
        return "./" + link
    return train_log_root


def seed_everything(seed, rank):
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


# ----------------------------------------------------------------------------------------------------------
# data


def build_datasets(args):
    crop = (args.crop_h, args.crop_w)
    common = dict(seed=args.seed, flow_teacher=args.flow_teacher)
    if args.dataset in ("vimeo90k_triplet", "vimeo90k_septuplet"):
        if not args.data_root:
            raise SystemExit("error: --data_root (the Vimeo90K folder) is required for --dataset " + args.dataset)
        kind = Vimeo90KTriplets if args.dataset == "vimeo90k_triplet" else Vimeo90KSeptuplets
        train = kind(args.data_root, "train", crop_size=crop, augment=True, **common)
        val = kind(args.data_root, "test", seed=args.seed)
        textures = None
    elif args.dataset == "videos":
        if not args.video_paths:
            raise SystemExit("error: --video_paths is required for --dataset videos")
        cache = {"auto": os.path.join(args.train_log_root, "video_cache"), "none": None}.get(args.video_cache,
                                                                                           args.video_cache)
        video = dict(max_gap=args.max_gap, val_fraction=args.val_fraction, scene_threshold=args.scene_threshold,
                     cache_dir=cache)
        train_split = "all" if args.val_video_paths else "train"
        real = [VideoTriplets(args.video_paths, train_split, crop_size=crop, augment=True,
                              exclude=args.val_video_paths, fixed=False, **video, **common)]
        if args.extra_video_paths:
            real.append(VideoTriplets(args.extra_video_paths, "all", crop_size=crop, augment=True,
                                      exclude=args.val_video_paths, **video, **common))
        train = real[0] if len(real) == 1 else KeyedConcat(real)
        val_sources, val_split = (args.val_video_paths, "all") if args.val_video_paths else (args.video_paths, "val")
        val = VideoTriplets(val_sources, val_split, val_stride=args.val_stride, val_gaps=args.val_gaps, fixed=True,
                            **video, seed=args.seed)
        # synthetic layers may also use training frames (never held-out ones) as textures: every 10th frame of
        # each shot's training part, read from the cache when a texture is drawn
        textures = FrameRefs(skimage_textures() + [(part.clips[clip][1], i) for part in real
                                                   for clip, start, end in part.shots for i in range(start, end, 10)])
    else:
        train, val, textures = None, None, None
    if args.dataset == "synthetic" or args.synthetic_ratio > 0:
        ratio = 1.0 if train is None else args.synthetic_ratio
        length = 10_000 if train is None else int(round(len(train) * ratio / max(1e-9, 1 - ratio)))
        synthetic = SyntheticMotion(length, crop, textures=textures, max_translation=args.synthetic_max_motion,
                                    min_translation=args.synthetic_min_motion,
                                    log_uniform_fraction=args.synthetic_log_uniform_fraction,
                                    static_fraction=args.synthetic_static_fraction, seed=args.seed)
        train = synthetic if train is None else KeyedConcat([train, synthetic])
        if val is None:
            val = SyntheticMotion(64, crop, middle_time=0.5, seed=args.seed + 1)
    if args.val_samples and len(val) > args.val_samples:
        val = torch.utils.data.Subset(val, range(args.val_samples))
    return train, val


# ----------------------------------------------------------------------------------------------------------
# logging helpers


class Logger:
    """Progress lines to stdout and runtime.log, scalars and images to TensorBoard (rank 0 only)."""

    def __init__(self, exp_dir, enabled):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(exp_dir, "tensorboard"))
            self.log_file = open(os.path.join(exp_dir, "runtime.log"), "a")

    def line(self, text):
        if self.enabled:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            print(text, flush=True)
            self.log_file.write(f"{stamp} {text}\n")
            self.log_file.flush()

    def scalars(self, step, values):
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag, float(value), step)

    def images(self, step, tag, batch, prediction, bi_flow):
        """One sheet: img0 | prediction | gt | img1 over flow 0->1 | flow 1->0 (first sample of the batch)."""
        if not self.enabled:
            return
        row = lambda *ts: torch.cat([t.detach().float().cpu().clamp(0, 1) for t in ts], 2)
        top = row(batch["img0"][0], prediction[0], batch["gt"][0], batch["img1"][0])
        flows = [torch.from_numpy(flow_to_color(bi_flow[0, i:i + 2].float().cpu())).permute(2, 0, 1) / 255.0
                 for i in (0, 2)]
        bottom = row(*flows, torch.zeros_like(flows[0]), torch.zeros_like(flows[0]))
        self.writer.add_image(tag, torch.cat([top, bottom], 1), step)

    def close(self):
        if self.enabled:
            self.writer.close()
            self.log_file.close()


def format_duration(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return (f"{days}d " if days else "") + time.strftime("%H:%M:%S", time.gmtime(rest))


# ----------------------------------------------------------------------------------------------------------
# validation and checkpoints


@torch.no_grad()
def validate(model, dataset, args, device, logger=None, step=0):
    """(mean PSNR, mean SSIM, per-sample PSNRs) of the final frame on ``dataset`` (full frames, padded to the
    pyramid's multiple); the first sample's result goes to TensorBoard as "val/images"."""
    model.eval()
    psnrs, ssims = [], []
    multiple = pad_multiple(args.pyr_level)
    for i in range(len(dataset)):
        sample = {k: v[None].to(device) for k, v in dataset[i].items()}
        h, w = sample["gt"].shape[-2:]
        prediction, bi_flow, _ = model(pad_to_multiple(sample["img0"], multiple),
                                       pad_to_multiple(sample["img1"], multiple), sample["time"].item(),
                                       pyr_level=args.pyr_level)
        prediction, bi_flow = prediction[..., :h, :w], bi_flow[..., :h, :w]
        psnrs.append(psnr(prediction, sample["gt"]).item())
        ssims.append(ssim(prediction, sample["gt"]).item())
        if i == 0 and logger is not None:
            logger.images(step, "val/images", sample, prediction, bi_flow)
    model.train()
    return float(np.mean(psnrs)), float(np.mean(ssims)), psnrs


def psnr_by_gap(dataset, psnrs):
    """{gap: mean PSNR} of a video validation set's per-sample PSNRs (empty for other datasets)."""
    gaps = [start[2] for start in getattr(dataset, "starts", [])]
    if len(gaps) != len(psnrs) or len(set(gaps)) < 2:
        return {}
    return {gap: float(np.mean([p for g, p in zip(gaps, psnrs) if g == gap])) for gap in sorted(set(gaps))}


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
    by_gap = psnr_by_gap(val_set, psnrs)
    gaps = "; " + ", ".join(f"gap {g}: {v:.3f} dB" for g, v in by_gap.items()) if by_gap else ""
    print(f"{args.model_file}: validation PSNR {val_psnr:.3f} dB, SSIM {val_ssim:.4f} ({len(val_set)} samples{gaps})")


def save_training_state(path, model, optimizer, step, best_psnr, args, scaler=None, ema=None):
    state = {"model": strip_prefix(dict(model.state_dict())), "optimizer": optimizer.state_dict(), "step": step,
             "best_psnr": best_psnr, "args": vars(args), "torch_rng": torch.get_rng_state(),
             "python_rng": random.getstate(), "scaler": scaler.state_dict() if scaler is not None else {},
             "ema": ema.state_dict() if ema is not None else {}}
    atomic_save(lambda tmp: torch.save(state, tmp), path)


# ----------------------------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    keep_freed_memory()      # 1.3-1.6x faster steps on the CPU: large activations reuse freed memory
    # OpenCV's thread pool does not survive fork(): keep it single-threaded before data workers start
    cv2.setNumThreads(1)
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

    exp_dir = os.path.join(args.train_log_root, args.exp_name)
    ckpt_dir = os.path.join(exp_dir, "checkpoints")
    if is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
        tensorboard_root = link_train_log(args.train_log_root)
    logger = Logger(exp_dir, is_main)
    logger.line(f"command: {' '.join(sys.argv)}")
    if is_main:
        logger.line(f"tensorboard --logdir={os.path.join(tensorboard_root, args.exp_name, 'tensorboard')}")
    logger.line(f"world size {world_size}, batch {args.batch_size} per process ({args.batch_size * world_size} "
                f"total), device {device}, threads {torch.get_num_threads()}, amp {args.amp}")

    model = build_model(args.model_size, pyr_level=args.pyr_level).to(device)
    if args.model_file:
        load_model_file(model, args.model_file)
        logger.line(f"initialised from {args.model_file}")
    if args.channels_last is None:
        args.channels_last = device.type == "cpu"
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.init_lr, weight_decay=args.weight_decay)
    # fp16 loss scaling; its state (scale, growth tracker) is part of the training state
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    # weight average: the first update copies the weights, later ones move them (1 - decay) towards the model
    ema = None
    if args.ema_decay:
        if not 0 < args.ema_decay < 1:
            raise SystemExit(f"error: --ema_decay must lie in (0, 1), got {args.ema_decay}")
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay), use_buffers=True)

    step, best_psnr = 0, -1.0
    last_path = os.path.join(ckpt_dir, "last.pt")
    if args.resume:
        if not os.path.isfile(last_path):
            raise SystemExit(f"error: --resume but no checkpoint at {last_path}")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        step, best_psnr = state["step"], state["best_psnr"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        logger.line(f"resumed from {last_path} at step {step}")

    train_set, val_set = build_datasets(args)
    if step == 0 and not args.model_file:
        # from scratch: give the features unit scale on a few validation frames (identical on every rank)
        frames = torch.stack([val_set[i]["img0"] for i in range(min(8, len(val_set)))]).to(device)
        calibrate_feature_scale(model, frames.contiguous(memory_format=memory_format))
        logger.line(f"feature scale calibrated on {len(frames)} validation frames")

    ddp_model = model
    if world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)

    sampler = EpochIndexSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed)
    steps_per_epoch = (len(train_set) // world_size) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"error: {len(train_set)} training samples are fewer than one batch per process")
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.nr_data_worker,
        drop_last=True, pin_memory=device.type == "cuda",
        persistent_workers=False)
    logger.line(f"{len(train_set)} training samples ({steps_per_epoch} steps per epoch), "
                f"{len(val_set)} validation samples; {args.steps} steps")

    signalled = {}

    def request_stop(signum, _frame):
        # only record the signal: printing here could re-enter a print the main thread is in the middle of
        # ("reentrant call" RuntimeError), and forked data workers inherit this handler. The flag is never
        # cleared, so a signal arriving during a step's stop vote is acted on at the next step, not lost.
        signalled.setdefault("signal", signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # the weights that are validated and saved as best.pkl / last.pkl: the average when there is one
    kept_model = model if ema is None else ema.module

    def checkpoint(validate_now):
        nonlocal best_psnr
        if validate_now:
            val_psnr, val_ssim, psnrs = (validate(kept_model, val_set, args, device, logger, step) if is_main
                                         else (0, 0, []))
            if is_main:
                by_gap = psnr_by_gap(val_set, psnrs)
                logger.scalars(step, {"val/psnr": val_psnr, "val/ssim": val_ssim,
                                      **{f"val/psnr_gap{g}": v for g, v in by_gap.items()}})
                text = f"step {step}: validation PSNR {val_psnr:.3f} dB, SSIM {val_ssim:.4f}"
                if by_gap:
                    text += " (" + ", ".join(f"gap {g}: {v:.3f}" for g, v in by_gap.items()) + ")"
                candidates = [(val_psnr, kept_model, "")]
                if ema is not None:   # the raw weights too: they may validate higher than the average
                    raw_psnr, raw_ssim, _ = validate(model, val_set, args, device)
                    logger.scalars(step, {"val/psnr_raw": raw_psnr, "val/ssim_raw": raw_ssim})
                    text += f" (average of weights; raw weights {raw_psnr:.3f} dB, {raw_ssim:.4f})"
                    candidates.append((raw_psnr, model, " (raw weights)"))
                logger.line(text)
                if args.keep_validated_weights:
                    save_weights(model, os.path.join(ckpt_dir, f"step_{step:06d}.pkl"))
                score, weights, which = max(candidates, key=lambda c: c[0])
                if score > best_psnr:
                    best_psnr = score
                    save_weights(weights, os.path.join(ckpt_dir, "best.pkl"))
                    logger.line(f"step {step}: new best{which}, saved best.pkl")
        if is_main:
            save_training_state(last_path, model, optimizer, step, best_psnr, args, scaler, ema)
            save_weights(kept_model, os.path.join(ckpt_dir, "last.pkl"))
        if world_size > 1:
            dist.barrier()

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    model.train()
    window_start, window_steps, start_step = time.time(), 0, step

    def stop_point_reached():
        return 0 < args.stop_at_step <= step < args.steps

    stopping = stop_point_reached()
    # unreadable samples are skipped by the datasets (one warning per file) and counted here: samples drawn
    # (used + skipped) and skipped, this process's since the start of this run
    drawn, skipped, data_failure = 0, 0, False
    while step < args.steps and not stopping:
        epoch, position = divmod(step, steps_per_epoch)
        sampler.set_position(epoch, position * args.batch_size)
        batches = iter(loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except UnreadableDataError as error:
                raise SystemExit(f"error: the training data cannot be read: {error}") from None
            lr = learning_rate(step, args.steps, args.init_lr, args.min_lr, args.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            skipped_now = int(batch.pop("skipped").sum())
            skipped += skipped_now
            drawn += args.batch_size + skipped_now
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            img0 = batch["img0"].contiguous(memory_format=memory_format)
            img1 = batch["img1"].contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                prediction, bi_flow, extra = ddp_model(img0, img1, batch["time"])
            loss, terms = frame_loss(prediction.float(), batch["gt"], args.loss_type)
            flow_weight = args.flow_loss_weight
            if args.flow_loss_decay_steps:
                flow_weight *= max(0.0, 1 - step / args.flow_loss_decay_steps)
            if flow_weight > 0:
                terms["flow"] = flow_supervision(extra["bi_flows"], batch["flow"], batch["flow_valid"])
                loss = loss + flow_weight * terms["flow"]
            if args.matching_loss_weight > 0:
                terms["matching"] = matching(*extra["features"], batch["flow"], batch["flow_valid"])
                loss = loss + args.matching_loss_weight * terms["matching"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)     # the norm is logged always; clipped only with --grad_clip
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                       args.grad_clip if args.grad_clip > 0 else float("inf"))
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            window_steps += 1

            if step % args.log_interval == 0 or step == args.steps:
                elapsed = time.time() - window_start
                rate = window_steps / max(elapsed, 1e-9)
                logger.scalars(step, {"train/loss": loss.item(), "train/lr": lr, "train/grad_norm": grad_norm.item(),
                                      "data/skipped_samples": skipped,
                                      **{f"train/loss_{k}": v.item() for k, v in terms.items()}})
                logger.line(f"step {step}/{args.steps} | loss {loss.item():.4f} | grad norm {grad_norm.item():.3g} | "
                            f"lr {lr:.2e} | {rate:.3f} it/s | "
                            f"ETA {format_duration((args.steps - step) / max(rate, 1e-9))}"
                            + (f" | {skipped} unreadable samples skipped" if skipped else ""))
                window_start, window_steps = time.time(), 0
            if step % args.image_interval == 0 or step == start_step + 1:
                logger.images(step, "train/images", batch, prediction, bi_flow)

            # all processes stop at the same step: a signal to any of them stops all
            # (2: too many unreadable samples on some process)
            too_many_skipped = drawn >= 10 * args.batch_size and skipped > args.max_skip_fraction * drawn
            stop_now = torch.tensor(2 if too_many_skipped else int("signal" in signalled or stop_point_reached()),
                                    device=device)   # NCCL reduces device tensors only
            if world_size > 1:
                dist.all_reduce(stop_now, op=dist.ReduceOp.MAX)
            stopping = bool(stop_now.item())
            data_failure = stop_now.item() == 2
            if stopping:
                reason = ("too many unreadable samples" if data_failure else
                          f"--stop_at_step {args.stop_at_step}" if stop_point_reached() else
                          f"signal {signalled['signal']}" if "signal" in signalled else "another process was signalled")
                logger.line(f"step {step}: {reason}; saving {last_path} and stopping")
            if step % args.save_interval == 0 or step == args.steps or stopping:
                checkpoint(validate_now=not stopping)
            if step >= args.steps or stopping:
                break

    if data_failure:
        logger.close()
        raise SystemExit(f"error: {skipped} of the {drawn} training samples drawn by this process could not be read "
                         f"(more than --max_skip_fraction {args.max_skip_fraction}); the warnings above name the "
                         f"files; {last_path} holds step {step}")
    logger.line(f"finished at step {step}; best validation PSNR {best_psnr:.3f} dB")
    logger.close()
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
