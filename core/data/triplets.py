"""Training and validation triplets: Vimeo90K (triplet and septuplet) and users' own videos or frame folders.

Every dataset is indexed by a key ``(epoch, index)`` (see :mod:`core.data.sampler`); the sample's random choices
(frame gap, crop, augmentation) come from ``np.random.default_rng([seed, epoch, index])``, so a run is
reproducible whatever the number of data workers, and a resumed run sees exactly the same samples.

A sample is a dict of tensors: ``img0``, ``img1``, ``gt`` (3 x H x W float in [0, 1], RGB), ``time`` (scalar t
of ``gt``), ``flow`` (4 x H x W reference bi-directional flow between img0 and img1 in pixels, zeros if none)
and ``flow_valid`` (2 x H x W: 1 where ``flow`` holds a reference, channel 0 for the flow 0 -> 1, channel 1 for
1 -> 0; all 0 when there is none).
"""
import os
import warnings

import cv2
import numpy as np
import torch

from ..frames import FrameError, image_to_tensor, read_image, to_uint8
from ..video import DEFAULT_SCENE_THRESHOLD, VideoError, find_scene_cuts
from .augment import augment_triplet, ensure_min_size, random_crop
from .video_cache import CachedFrames, cut_indices, prepare_cache
from .video_frames import list_video_sources, read_all_frames


def dis_flow(img0, img1):
    """Reference bi-directional flow from OpenCV's DIS (medium preset): 4 x H x W float32 tensor, pixels."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey0 = cv2.cvtColor(img0, cv2.COLOR_RGB2GRAY)
    grey1 = cv2.cvtColor(img1, cv2.COLOR_RGB2GRAY)
    forward = dis.calc(grey0, grey1, None)
    backward = dis.calc(grey1, grey0, None)
    return torch.from_numpy(np.concatenate([forward, backward], 2)).permute(2, 0, 1).contiguous()


def consistent_flow_mask(flow, alpha=0.01, beta=0.5):
    """Forward-backward consistency of a bi-directional flow (the occlusion test of Meister et al., UnFlow 2018).

    flow: 4 x H x W tensor in pixels (0:2 frame 0 -> 1, 2:4 frame 1 -> 0). A pixel's flow f is kept when the
    other direction's flow b, read where f lands, brings it back: |f + b|^2 < alpha (|f|^2 + |b|^2) + beta
    (pixels^2), and f lands inside the frame. Returns a 2 x H x W float mask (1 kept, 0 not), one per direction.
    """
    h, w = flow.shape[-2:]
    fields = flow.permute(1, 2, 0).numpy()
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    masks = []
    for there, back in ((fields[..., 0:2], fields[..., 2:4]), (fields[..., 2:4], fields[..., 0:2])):
        landing = grid + there
        back_there = cv2.remap(np.ascontiguousarray(back), landing[..., 0], landing[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        inside = (landing[..., 0] >= 0) & (landing[..., 0] <= w - 1) & (landing[..., 1] >= 0) & \
                 (landing[..., 1] <= h - 1)
        error = ((there + back_there) ** 2).sum(-1)
        bound = alpha * ((there ** 2).sum(-1) + (back_there ** 2).sum(-1)) + beta
        masks.append(inside & (error < bound))
    return torch.from_numpy(np.stack(masks).astype(np.float32))


FLOW_TEACHERS = ("none", "dis", "dis_consistent")   # the reference flows a TripletDataset can attach


class TripletDataset(torch.utils.data.Dataset):
    """Base class: subclasses implement ``__len__`` and ``load(index, rng) -> ([frame0, gt, frame1], t)``.

    crop_size: (h, w) random crop for training, None to keep full frames; augment: flips, rotations, channel
    and temporal reversal; flow_teacher: "dis" to attach OpenCV DIS flow as a reference everywhere,
    "dis_consistent" only where its two directions agree (:func:`consistent_flow_mask`), None for none.
    """

    def __init__(self, crop_size=None, augment=False, flow_teacher=None, seed=0):
        self.crop_size = crop_size
        self.augment = augment
        if flow_teacher not in (None, *FLOW_TEACHERS):
            raise ValueError(f"unknown flow teacher {flow_teacher!r}; use 'dis', 'dis_consistent' or None")
        self.flow_teacher = None if flow_teacher == "none" else flow_teacher
        self.seed = seed

    def load(self, index, rng):
        raise NotImplementedError

    def __getitem__(self, key):
        """The sample of ``key``; if its frames cannot be read, the next readable one (a warning names the file
        once per process, ``sample["skipped"]`` counts the samples passed over). :class:`UnreadableDataError`
        after :data:`MAX_CONSECUTIVE_SKIPS` unreadable samples in a row."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        last = None
        for skipped in range(MAX_CONSECUTIVE_SKIPS):
            try:
                sample = self._sample(epoch, (index + skipped) % len(self))
            except UNREADABLE as error:
                _warn_unreadable(error)
                last = error
                continue
            sample["skipped"] = torch.tensor(skipped)
            return sample
        raise UnreadableDataError(f"{MAX_CONSECUTIVE_SKIPS} samples in a row from index {index} of "
                                  f"{type(self).__name__} could not be read (last: {last})")

    def _sample(self, epoch, index):
        rng = np.random.default_rng([self.seed, epoch, index])
        frames, t = self.load(index, rng)
        frames = [to_uint8(f) for f in frames]
        if self.augment:
            frames, t = augment_triplet(frames, t, rng, self.crop_size)
        elif self.crop_size is not None:
            frames = random_crop(ensure_min_size(frames, *self.crop_size), *self.crop_size, rng)
        img0, gt, img1 = frames
        if self.flow_teacher is None:
            flow, valid = torch.zeros(4, *img0.shape[:2]), torch.zeros(2, *img0.shape[:2])
        else:
            flow = dis_flow(img0, img1)
            if self.flow_teacher == "dis_consistent":
                valid = consistent_flow_mask(flow)
            else:
                valid = torch.ones(2, *flow.shape[1:])
        return {"img0": image_to_tensor(img0)[0], "img1": image_to_tensor(img1)[0], "gt": image_to_tensor(gt)[0],
                "time": torch.tensor(t, dtype=torch.float32), "flow": flow, "flow_valid": valid}


MAX_CONSECUTIVE_SKIPS = 16
"""A dataset gives up (:class:`UnreadableDataError`) after this many unreadable samples in a row."""

UNREADABLE = (FrameError, VideoError, OSError, cv2.error)
"""Errors of a sample whose frames cannot be read or decoded (a corrupt PNG, a truncated cache file)."""


class UnreadableDataError(RuntimeError):
    """Too many samples of a dataset cannot be read."""


_warned = set()


def _warn_unreadable(error):
    """One warning per unreadable file (per process), naming it."""
    message = str(error)
    if message not in _warned:
        _warned.add(message)
        warnings.warn(f"skipping an unreadable training sample: {message}", UnreadableSampleWarning, stacklevel=3)


class UnreadableSampleWarning(UserWarning):
    """A sample was skipped because its frames cannot be read."""


def _read_frames(paths):
    frames = [read_image(p) for p in paths]
    if any(f.shape != frames[0].shape for f in frames):
        sizes = ", ".join(f"{p}: {f.shape[1]}x{f.shape[0]}" for p, f in zip(paths, frames))
        raise FrameError(f"frames of one sample differ in size ({sizes})")
    return frames


def _read_list(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {path}")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


class Vimeo90KTriplets(TripletDataset):
    """``root/sequences/XXXXX/YYYY/im{1,2,3}.png`` listed in ``tri_trainlist.txt`` / ``tri_testlist.txt``; t=0.5."""

    def __init__(self, root, split="train", **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.items = _read_list(os.path.join(root, f"tri_{split}list.txt"))

    def __len__(self):
        return len(self.items)

    def load(self, index, rng):
        folder = os.path.join(self.root, "sequences", self.items[index])
        return _read_frames([os.path.join(folder, f"im{i}.png") for i in (1, 2, 3)]), 0.5


class Vimeo90KSeptuplets(TripletDataset):
    """``root/sequences/XXXXX/YYYY/im1..im7.png`` listed in ``sep_{split}list.txt``.

    Training draws three ordered frames i < j < k per sample, t = (j - i) / (k - i); validation uses 1, 4, 7.
    """

    def __init__(self, root, split="train", **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.split = split
        self.items = _read_list(os.path.join(root, f"sep_{split}list.txt"))

    def __len__(self):
        return len(self.items)

    def load(self, index, rng):
        if self.split == "train":
            i, j, k = sorted(int(v) for v in rng.choice(np.arange(1, 8), 3, replace=False))
        else:
            i, j, k = 1, 4, 7
        folder = os.path.join(self.root, "sequences", self.items[index])
        return _read_frames([os.path.join(folder, f"im{n}.png") for n in (i, j, k)]), (j - i) / (k - i)


class VideoTriplets(TripletDataset):
    """Triplets from users' own footage: video files (any container PyAV decodes) and/or folders of frames.

    sources: paths of video files, frame folders, or directories holding either. Each clip is cut into shots at
    scene cuts (:func:`core.video.find_scene_cuts`); a triplet never crosses a cut. The first ``1 - val_fraction``
    of each clip's frames are the "train" split and the tail the "val" split (a split by time that keeps the
    held-out frames contiguous, so long-gap tests can be built from them); "all" uses every frame (for clips
    that only train, or whole held-out clips that only validate). The splits never share a frame, and
    ``split_frame[clip]`` records where the tail starts. Training picks a span s in [2, 2 * max_gap] frames and a
    middle frame j at random (t = (j - i) / s); validation uses triplets (i, i + g, i + 2g) for each gap g of
    ``val_gaps`` (t = 0.5), every ``val_stride``-th one; gap 0 is a still triplet (one frame three times), which
    measures how well unmoving content is left as it is.

    fixed: True for validation triplets, False for random spans; None (default) is True for the "val" split only
    (whole held-out clips validate with split "all", fixed True). cache_dir: None decodes every clip into memory
    (fine for a few short clips); a folder reads frames lazily from the on-disk cache of
    :mod:`core.data.video_cache` (prepared there on first use), so memory does not grow with the footage.
    exclude: sources left out (e.g. the clips held out for validation).
    """

    def __init__(self, sources, split="train", max_gap=4, val_fraction=0.15, val_stride=4, val_gaps=(1,),
                 scene_threshold=DEFAULT_SCENE_THRESHOLD, fixed=None, cache_dir=None, exclude=(), **kwargs):
        super().__init__(**kwargs)
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be train, val or all, got {split!r}")
        if val_stride < 1:
            raise ValueError(f"val_stride must be at least 1, got {val_stride}")
        if not val_gaps or min(val_gaps) < 0:
            raise ValueError(f"val_gaps must be gaps of at least 0 frames (0: a still triplet), got {val_gaps}")
        self.split = split
        self.fixed = split == "val" if fixed is None else fixed
        self.max_gap = max_gap
        self.clips, self.shots = [], []     # shots: (clip index, first frame, end frame exclusive)
        self.split_frame = []
        excluded = {os.path.realpath(e) for e in list_video_sources(exclude)} if exclude else set()
        paths = [p for p in list_video_sources(sources) if os.path.realpath(p) not in excluded]
        if cache_dir is None:
            clips = [(p, read_all_frames(p)) for p in paths]
            clips = [(p, frames, find_scene_cuts(frames, scene_threshold)) for p, frames in clips]
        else:
            entries = prepare_cache(paths, cache_dir)
            clips = [(p, CachedFrames(cache_dir, e), cut_indices(e, scene_threshold)) for p, e in zip(paths, entries)]
        for source, frames, cuts in clips:
            if not len(frames):
                continue
            clip = len(self.clips)
            self.clips.append((source, frames))
            boundary = int(round(len(frames) * (1 - val_fraction))) if split != "all" else len(frames)
            self.split_frame.append(boundary)
            bounds = [0] + [c + 1 for c in cuts] + [len(frames)]
            for start, end in zip(bounds[:-1], bounds[1:]):
                if split == "train":
                    end = min(end, boundary)
                elif split == "val":
                    start = max(start, boundary)
                if end - start >= 3:
                    self.shots.append((clip, start, end))
        if not self.shots:
            raise ValueError(f"no usable frames (shots of >= 3 frames) in {sources}")
        # training: one index per possible first frame; validation: (shot, first frame, gap), every
        # val_stride-th triplet of each gap
        self.starts = []
        for shot, (clip, start, end) in enumerate(self.shots):
            if not self.fixed:
                self.starts += [(shot, i, None) for i in range(start, end - 2)]
            else:
                for gap in val_gaps:
                    self.starts += [(shot, i, gap) for i in range(start, end - 2 * gap, val_stride)]
        if not self.starts:
            raise ValueError(f"no validation triplets at gaps {tuple(val_gaps)} in {sources}")

    def __len__(self):
        return len(self.starts)

    def load(self, index, rng):
        shot, i, gap = self.starts[index]
        clip, _, end = self.shots[shot]
        frames = self.clips[clip][1]
        if gap is not None:
            return [frames[i], frames[i + gap], frames[i + 2 * gap]], 0.5
        span = int(rng.integers(2, min(2 * self.max_gap, end - 1 - i) + 1))
        j = i + int(rng.integers(1, span))
        return [frames[i], frames[j], frames[i + span]], (j - i) / span
