"""The training and validation sets a run's options describe, and the training batches."""
import os

import torch

from ..data import EpochIndexSampler, KeyedConcat, SyntheticMotion, VideoTriplets, Vimeo90KSeptuplets, \
    Vimeo90KTriplets
from ..data.synthetic import skimage_textures
from ..data.triplets import UnreadableDataError
from ..data.video_cache import FrameRefs


def build_datasets(args):
    """(training set, validation set) of the run's options (``tools.train``'s: dataset, paths, crops, synthetic
    mix, flow teacher, validation gaps and samples, seed). A missing required path is a one-line error."""
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


def training_loader(train_set, args, world_size, rank, device):
    """(DataLoader, its EpochIndexSampler, steps per epoch) of this process's share of ``train_set``: shuffled by
    (seed, epoch), batches of ``args.batch_size``, the last incomplete one dropped. Fewer samples than one batch
    per process is a one-line error."""
    sampler = EpochIndexSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed)
    steps_per_epoch = (len(train_set) // world_size) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"error: {len(train_set)} training samples are fewer than one batch per process")
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                                         num_workers=args.nr_data_worker, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=False)
    return loader, sampler, steps_per_epoch


def read_batches(loader):
    """The loader's batches; data that cannot be read at all (not a skippable sample) is a one-line error."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except UnreadableDataError as error:
            raise SystemExit(f"error: the training data cannot be read: {error}") from None
        yield batch


class SkipCounter:
    """Unreadable samples are skipped by the datasets (one warning per file; a batch's "skipped" counts them) and
    counted here: samples drawn (used + skipped) and skipped, this process's since the start of this run."""

    def __init__(self, batch_size, max_fraction):
        self.batch_size, self.max_fraction = batch_size, max_fraction
        self.drawn = self.skipped = 0

    def count(self, batch):
        """Take the "skipped" entry out of ``batch`` and count it."""
        skipped_now = int(batch.pop("skipped").sum())
        self.skipped += skipped_now
        self.drawn += self.batch_size + skipped_now

    @property
    def too_many(self):
        return self.drawn >= 10 * self.batch_size and self.skipped > self.max_fraction * self.drawn
