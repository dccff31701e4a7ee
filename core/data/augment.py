"""Training augmentations on frame triplets, as in the paper's training.

A triplet is a list [frame0, middle, frame1] of H x W x 3 uint8 arrays (same size) with the middle frame's
time t in (0, 1). Every function takes a numpy ``Generator`` so a sample's augmentation is reproducible.
"""
import cv2
import numpy as np


def ensure_min_size(frames, min_h, min_w):
    """Upscale (bicubic, aspect kept) frames smaller than min_h x min_w so a crop of that size fits."""
    h, w = frames[0].shape[:2]
    if h >= min_h and w >= min_w:
        return frames
    factor = max(min_h / h, min_w / w)
    size = (max(min_w, int(round(w * factor))), max(min_h, int(round(h * factor))))
    return [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames]


def random_crop(frames, crop_h, crop_w, rng):
    h, w = frames[0].shape[:2]
    if h < crop_h or w < crop_w:
        raise ValueError(f"frames of {h}x{w} are smaller than the {crop_h}x{crop_w} crop")
    y = int(rng.integers(0, h - crop_h + 1))
    x = int(rng.integers(0, w - crop_w + 1))
    return [f[y:y + crop_h, x:x + crop_w] for f in frames]


def flip_horizontal(frames):
    return [f[:, ::-1] for f in frames]


def flip_vertical(frames):
    return [f[::-1] for f in frames]


def rotate90(frames, k):
    """Rotate by k x 90 degrees counter-clockwise."""
    return [np.rot90(f, k) for f in frames]


def reverse_channels(frames):
    """RGB <-> BGR."""
    return [f[:, :, ::-1] for f in frames]


def reverse_time(frames, t):
    """Play the triplet backwards: frame0 and frame1 swap, t -> 1 - t."""
    return [frames[2], frames[1], frames[0]], 1.0 - t


def augment_triplet(frames, t, rng, crop_size=None):
    """Random crop (if ``crop_size`` = (h, w)), flips, rotation, channel reversal and temporal reversal, each
    with probability 1/2; the rotation is one of 0/90/180/270 degrees for square frames and 0/180 otherwise
    (so a batch keeps one shape). Returns (frames as contiguous arrays, t)."""
    if crop_size is not None:
        frames = random_crop(ensure_min_size(frames, *crop_size), crop_size[0], crop_size[1], rng)
    if rng.random() < 0.5:
        frames = flip_horizontal(frames)
    if rng.random() < 0.5:
        frames = flip_vertical(frames)
    square = frames[0].shape[0] == frames[0].shape[1]
    frames = rotate90(frames, int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2)))
    if rng.random() < 0.5:
        frames = reverse_channels(frames)
    if rng.random() < 0.5:
        frames, t = reverse_time(frames, t)
    return [np.ascontiguousarray(f) for f in frames], t
