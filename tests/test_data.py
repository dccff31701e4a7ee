"""Training data: augmentations, the resumable sampler, the datasets (Vimeo90K layouts, own videos, synthetic
motion) and their errors. Every fixture is built in tmp_path."""
import os
import re
import shutil
import warnings

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from core.data import EpochIndexSampler, KeyedConcat, SyntheticMotion, VideoTriplets, Vimeo90KSeptuplets, \
    Vimeo90KTriplets
from core.data.augment import (augment_triplet, ensure_min_size, flip_horizontal, flip_vertical, random_crop,
                               reverse_channels, reverse_time, rotate90)
from core.data.triplets import UnreadableDataError, UnreadableSampleWarning, consistent_flow_mask
from core.frames import FrameError
from core.video import find_scene_cuts, open_writer
from tools.train import build_datasets, parse_args


def coded_frames(h=6, w=8):
    """Three frames whose pixels encode (row, column, frame index) in their channels."""
    ys, xs = np.mgrid[0:h, 0:w]
    return [np.stack([ys, xs, np.full_like(ys, 10 * k)], -1).astype(np.uint8) for k in range(3)]


def photo_crop(image, y, x, h=64, w=64):
    return np.ascontiguousarray(image[y:y + h, x:x + w])


# ------------------------------------------------------------------------------------------ augmentation


def test_reverse_time_swaps_the_end_frames_and_maps_t():
    frames = coded_frames()
    reversed_frames, t = reverse_time(frames, 0.25)
    assert t == 0.75
    assert reversed_frames[0] is frames[2] and reversed_frames[1] is frames[1] and reversed_frames[2] is frames[0]


def test_geometric_transforms_and_channel_reversal_apply_to_all_frames():
    frames = coded_frames()
    for function, expected in ((flip_horizontal, lambda f: f[:, ::-1]), (flip_vertical, lambda f: f[::-1]),
                               (lambda fs: rotate90(fs, 1), lambda f: np.rot90(f, 1)),
                               (lambda fs: rotate90(fs, 3), lambda f: np.rot90(f, 3)),
                               (reverse_channels, lambda f: f[:, :, ::-1])):
        out = function(frames)
        assert len(out) == 3
        for k in range(3):
            np.testing.assert_array_equal(out[k], expected(frames[k]))
    np.testing.assert_array_equal(reverse_channels(frames)[1][..., 0], frames[1][..., 2])


def decode(frame):
    """(row map, column map, frame number) of an (augmented) coded frame; channel reversal swaps the row map
    (channel 0) and the constant frame code (channel 2)."""
    reversed_channels = np.all(frame[..., 0] == frame[0, 0, 0])
    rows, code = (frame[..., 2], frame[..., 0]) if reversed_channels else (frame[..., 0], frame[..., 2])
    return rows, frame[..., 1], int(code[0, 0]) // 10


def check_alike(frames, t, t_in):
    """The three frames got the same geometric transform; frame order and t agree. Returns the transform."""
    decoded = [decode(f) for f in frames]
    for rows, columns, _ in decoded[1:]:
        assert np.array_equal(rows, decoded[0][0]) and np.array_equal(columns, decoded[0][1])
    order = [number for _, _, number in decoded]
    assert order in ([0, 1, 2], [2, 1, 0])
    assert t == (t_in if order == [0, 1, 2] else 1 - t_in)
    return decoded[0][0].tobytes() + decoded[0][1].tobytes()


def test_augment_triplet_transforms_the_three_frames_alike():
    frames = coded_frames(8, 8)
    transforms, times, channel_orders = set(), set(), set()
    for seed in range(64):
        out, t = augment_triplet(frames, 0.25, np.random.default_rng(seed))
        assert all(f.flags["C_CONTIGUOUS"] and f.shape == (8, 8, 3) and f.dtype == np.uint8 for f in out)
        transforms.add(check_alike(out, t, 0.25))
        times.add(t)
        channel_orders.add(bool(np.all(out[1][..., 0] == 10)))
    assert len(transforms) == 8          # all flips and 90-degree rotations of a square
    assert times == {0.25, 0.75} and channel_orders == {False, True}


def test_augment_triplet_keeps_the_shape_of_non_square_frames():
    frames = coded_frames(6, 8)
    transforms = set()
    for seed in range(32):
        out, t = augment_triplet(frames, 0.5, np.random.default_rng(seed))
        assert all(f.shape == (6, 8, 3) for f in out)
        transforms.add(check_alike(out, t, 0.5))
    assert len(transforms) == 4          # flips and 180 degrees only


def test_augment_triplet_is_reproducible_from_the_generator():
    frames = coded_frames(16, 16)
    a, ta = augment_triplet(frames, 0.3, np.random.default_rng([1, 2, 3]), (8, 8))
    b, tb = augment_triplet(frames, 0.3, np.random.default_rng([1, 2, 3]), (8, 8))
    assert ta == tb and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_random_crop_size_and_same_window_for_all_frames():
    frames = coded_frames(20, 30)
    windows = set()
    for seed in range(20):
        out = random_crop(frames, 8, 12, np.random.default_rng(seed))
        assert all(f.shape == (8, 12, 3) for f in out)
        assert all(np.array_equal(out[0][..., :2], f[..., :2]) for f in out[1:])
        assert [int(f[0, 0, 2]) for f in out] == [0, 10, 20]
        windows.add((int(out[0][0, 0, 0]), int(out[0][0, 0, 1])))
    assert len(windows) > 5
    with pytest.raises(ValueError, match="smaller than"):
        random_crop(frames, 21, 8, np.random.default_rng(0))


def test_augment_triplet_crops_all_frames_alike():
    frames = coded_frames(20, 30)
    for seed in range(8):
        out, t = augment_triplet(frames, 0.5, np.random.default_rng(seed), (8, 8))
        assert all(f.shape == (8, 8, 3) for f in out)
        check_alike(out, t, 0.5)


def test_ensure_min_size_upscales_small_frames_only():
    frames = [np.full((20, 30, 3), v, np.uint8) for v in (0, 100, 200)]
    out = ensure_min_size(frames, 32, 32)
    assert all(f.shape == (32, 48, 3) for f in out)                      # aspect kept, both sides >= 32
    assert [int(f.mean()) for f in out] == [0, 100, 200]
    assert ensure_min_size(frames, 20, 30) is frames                      # large enough: untouched
    tall = ensure_min_size(frames, 10, 64)
    assert tall[0].shape[:2] == (43, 64)


# --------------------------------------------------------------------------------------------- sampler


class Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_sampler_ranks_are_disjoint_and_cover_the_dataset():
    data = Sized(10)
    keys = [list(EpochIndexSampler(data, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert all(epoch == 0 for part in keys for epoch, _ in part)
    indices = [{i for _, i in part} for part in keys]
    assert len(keys[0]) == len(keys[1]) == 5
    assert not indices[0] & indices[1]
    assert indices[0] | indices[1] == set(range(10))
    # an odd length drops one sample; each rank still gets distinct indices
    keys = [[i for _, i in EpochIndexSampler(Sized(11), num_replicas=2, rank=r)] for r in (0, 1)]
    assert len(keys[0]) == len(keys[1]) == 5 and not set(keys[0]) & set(keys[1])


def test_sampler_order_depends_on_seed_and_epoch_only():
    data = Sized(50)
    a, b = EpochIndexSampler(data, seed=7), EpochIndexSampler(data, seed=7)
    a.set_position(3)
    b.set_position(3)
    assert list(a) == list(b)
    assert all(epoch == 3 for epoch, _ in a)
    b.set_position(4)
    assert [i for _, i in a] != [i for _, i in b]
    c = EpochIndexSampler(data, seed=8)
    c.set_position(3)
    assert [i for _, i in a] != [i for _, i in c]


def test_sampler_set_position_skips_samples():
    data = Sized(12)
    sampler = EpochIndexSampler(data, num_replicas=2, rank=1, seed=1)
    sampler.set_position(2)
    full = list(sampler)
    sampler.set_position(2, skip=4)
    assert list(sampler) == full[4:]
    assert len(sampler) == len(full) - 4 == 2


def test_keyed_concat_routes_keys():
    class Echo:
        def __init__(self, name, n):
            self.name, self.n = name, n

        def __len__(self):
            return self.n

        def __getitem__(self, key):
            return self.name, key

    both = KeyedConcat([Echo("a", 3), Echo("empty", 0), Echo("b", 2)])
    assert len(both) == 5
    assert both[(4, 2)] == ("a", (4, 2))
    assert both[(4, 3)] == ("b", (4, 0))
    assert both[(1, 4)] == ("b", (1, 1))


# ------------------------------------------------------------------------------------------- Vimeo90K


def write_rgb(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))


@pytest.fixture
def vimeo_triplets(tmp_path):
    """4 train + 1 test triplets of 64x64 shifted crops of a photo."""
    image = skimage.data.astronaut()
    root = tmp_path / "vimeo_triplet"
    keys = [f"00001/{n:04d}" for n in range(1, 6)]
    for n, key in enumerate(keys):
        for k in range(3):
            write_rgb(root / "sequences" / key / f"im{k + 1}.png", photo_crop(image, 100 + 30 * n, 150 + 3 * k))
    (root / "tri_trainlist.txt").write_text("\n".join(keys[:4]) + "\n\n")   # blank lines are ignored
    (root / "tri_testlist.txt").write_text(keys[4] + "\n")
    return root


def test_vimeo_triplets_samples(vimeo_triplets):
    train = Vimeo90KTriplets(str(vimeo_triplets), "train", crop_size=(32, 32), augment=True, seed=1)
    test = Vimeo90KTriplets(str(vimeo_triplets), "test")
    assert len(train) == 4 and len(test) == 1
    sample = test[0]
    assert set(sample) == {"img0", "img1", "gt", "time", "flow", "flow_valid", "skipped"}
    assert sample["skipped"].item() == 0
    assert sample["img0"].shape == (3, 64, 64) and sample["img0"].dtype == torch.float32
    assert sample["time"].item() == 0.5 and sample["flow_valid"].shape == (2, 64, 64)
    assert not sample["flow_valid"].any()
    assert 0 <= sample["gt"].min() and sample["gt"].max() <= 1
    expected = photo_crop(skimage.data.astronaut(), 220, 153)
    np.testing.assert_array_equal((sample["gt"].permute(1, 2, 0).numpy() * 255).round(), expected)
    assert train[(0, 0)]["img0"].shape == (3, 32, 32)
    # a crop larger than the frames: the frames are upscaled first (ensure_min_size)
    large = Vimeo90KTriplets(str(vimeo_triplets), "train", crop_size=(96, 80), augment=True, seed=1)
    assert all(large[(0, i)][name].shape == (3, 96, 80) for i in range(4) for name in ("img0", "gt", "img1"))


def test_sample_is_reproducible_from_its_key(vimeo_triplets):
    train = Vimeo90KTriplets(str(vimeo_triplets), "train", crop_size=(32, 32), augment=True, seed=1)
    for index in range(4):
        a, b = train[(0, index)], train[(0, index)]
        assert all(torch.equal(a[k], b[k]) for k in a)
        other_epoch = train[(1, index)]
        assert not all(torch.equal(a[k], other_epoch[k]) for k in ("img0", "gt", "img1"))
    other_seed = Vimeo90KTriplets(str(vimeo_triplets), "train", crop_size=(32, 32), augment=True, seed=2)
    assert not torch.equal(train[(0, 0)]["img0"], other_seed[(0, 0)]["img0"])


def test_loader_batches_do_not_depend_on_workers(vimeo_triplets):
    train = Vimeo90KTriplets(str(vimeo_triplets), "train", crop_size=(32, 32), augment=True, seed=1)
    batches = []
    for workers in (0, 1):
        sampler = EpochIndexSampler(train, seed=1)
        sampler.set_position(2, skip=1)
        loader = torch.utils.data.DataLoader(train, batch_size=1, sampler=sampler, num_workers=workers)
        batches.append([b["img0"] for b in loader])
    assert len(batches[0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(*batches))


def test_dis_flow_teacher(vimeo_triplets):
    train = Vimeo90KTriplets(str(vimeo_triplets), "test", flow_teacher="dis")
    sample = train[0]
    assert sample["flow_valid"].eq(1).all() and sample["flow_valid"].shape == (2, 64, 64)
    assert sample["flow"].shape == (4, 64, 64)
    # frames move 6 pixels left->right (x + 3 per frame in the crop window): the content moves by -6
    assert sample["flow"][0, 16:48, 16:48].median().item() == pytest.approx(-6, abs=1)
    assert sample["flow"][2, 16:48, 16:48].median().item() == pytest.approx(6, abs=1)
    # the consistent teacher keeps the same flow where both directions agree; flow 0 -> 1 (-6 px) leaves the
    # frame from the left 6 columns, flow 1 -> 0 (+6 px) from the right 6 columns
    checked = Vimeo90KTriplets(str(vimeo_triplets), "test", flow_teacher="dis_consistent")[0]
    assert torch.equal(checked["flow"], sample["flow"])
    mask = checked["flow_valid"]
    assert not mask[0, :, :5].any() and not mask[1, :, -5:].any()
    assert mask[:, 16:48, 16:48].mean() > 0.9
    with pytest.raises(ValueError, match="unknown flow teacher 'raft'; use 'dis', 'dis_consistent' or None"):
        Vimeo90KTriplets(str(vimeo_triplets), "test", flow_teacher="raft")


def test_consistent_flow_mask_by_hand():
    """A translation by (3, -2) px forward and (-3, 2) back agrees everywhere it stays inside the frame; an
    inconsistent backward flow is rejected; a small disagreement (|f + b| = 0.5 px) is tolerated."""
    flow = torch.zeros(4, 10, 12)
    flow[0], flow[1], flow[2], flow[3] = 3.0, -2.0, -3.0, 2.0
    mask = consistent_flow_mask(flow)
    expected_forward = torch.zeros(10, 12)
    expected_forward[2:, :9] = 1        # x + 3 <= 11 and y - 2 >= 0
    expected_backward = torch.zeros(10, 12)
    expected_backward[:8, 3:] = 1       # x - 3 >= 0 and y + 2 <= 9
    assert torch.equal(mask, torch.stack([expected_forward, expected_backward]))
    wrong = flow.clone()
    wrong[2:4] = -wrong[2:4]            # the backward flow goes the same way: |f + b|^2 = 52 > 0.01 * 26 + 0.5
    assert not consistent_flow_mask(wrong).any()
    close = flow.clone()
    close[2] += 0.5                     # |f + b|^2 = 0.25 < 0.01 (|f|^2 + |b|^2) + 0.5
    assert torch.equal(consistent_flow_mask(close)[0], expected_forward)


def test_bad_samples_name_their_files(vimeo_triplets):
    """Unreadable samples raise errors naming the file when loaded directly; the dataset skips them with one
    warning per file and counts the samples passed over."""
    dataset = Vimeo90KTriplets(str(vimeo_triplets), "train")
    folder = vimeo_triplets / "sequences" / "00001"
    good = dataset[3]
    corrupt = folder / "0001" / "im2.png"
    corrupt.write_bytes(b"this is not a PNG")
    with pytest.raises(FrameError, match="cannot read image.*" + re.escape(str(corrupt))):
        dataset.load(0, None)
    small = folder / "0002" / "im3.png"
    write_rgb(small, np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(FrameError, match="differ in size") as error:
        dataset.load(1, None)
    assert str(small) in str(error.value) and "48x32" in str(error.value) and "64x64" in str(error.value)
    missing = folder / "0003" / "im1.png"
    missing.unlink()
    with pytest.raises(FrameError, match="image not found: " + re.escape(str(missing))):
        dataset.load(2, None)
    # samples 0, 1 and 2 are unreadable: each gives the next readable one, sample 3, and counts what it skipped
    with pytest.warns(UnreadableSampleWarning) as caught:
        samples = [dataset[i] for i in range(3)]
    assert [s["skipped"].item() for s in samples] == [3, 2, 1]
    assert all(torch.equal(s["gt"], good["gt"]) for s in samples)
    named = [str(w.message) for w in caught]
    assert len(named) == 3 and all(any(str(p) in m for m in named) for p in (corrupt, small, missing))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # each file warns once per process
        dataset[0]
    with pytest.raises(FileNotFoundError, match="sep_trainlist.txt"):
        Vimeo90KSeptuplets(str(vimeo_triplets), "train")


def test_a_dataset_of_unreadable_samples_stops_with_a_clear_error(vimeo_triplets):
    for key in range(1, 6):
        (vimeo_triplets / "sequences" / "00001" / f"{key:04d}" / "im1.png").write_bytes(b"broken")
    dataset = Vimeo90KTriplets(str(vimeo_triplets), "train")
    with pytest.warns(UnreadableSampleWarning), pytest.raises(UnreadableDataError, match="could not be read"):
        dataset[0]


def test_vimeo_septuplets_time_is_the_relative_position(tmp_path):
    root = tmp_path / "vimeo_septuplet"
    for key in ("00001/0001", "00001/0002"):
        for n in range(1, 8):
            write_rgb(root / "sequences" / key / f"im{n}.png", np.full((24, 24, 3), 30 * n, np.uint8))
    (root / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "sep_testlist.txt").write_text("00001/0002\n")
    train = Vimeo90KSeptuplets(str(root), "train", crop_size=(16, 16), augment=True, seed=4)
    frame_number = lambda image: int(round(image.mean().item() * 255 / 30))
    seen = set()
    for epoch in range(40):
        sample = train[(epoch, epoch % 2)]
        i, j, k = (frame_number(sample[name]) for name in ("img0", "gt", "img1"))
        assert len({i, j, k}) == 3 and min(i, k) < j < max(i, k)
        assert sample["time"].item() == pytest.approx((j - i) / (k - i))
        assert sample["img0"].shape == (3, 16, 16)
        seen.add((min(i, k), j, max(i, k)))
    assert len(seen) > 10
    test = Vimeo90KSeptuplets(str(root), "test")
    sample = test[0]
    assert [frame_number(sample[n]) for n in ("img0", "gt", "img1")] == [1, 4, 7]
    assert sample["time"].item() == 0.5


# ---------------------------------------------------------------------------------------------- videos

SHOT = 12   # frames per shot


def two_shot_frames():
    """24 frames of 64x48: a shot panning over one photo, a hard cut, a shot panning over another."""
    astronaut, coffee = skimage.data.astronaut(), skimage.data.coffee()
    return ([photo_crop(astronaut, 120, 140 + 2 * k, 48, 64) for k in range(SHOT)] +
            [photo_crop(coffee, 150 + k, 200 + 2 * k, 48, 64) for k in range(SHOT)])


@pytest.fixture(scope="module")
def two_shot_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "two_shots.mp4"
    with open_writer(str(path), 25, 64, 48) as writer:
        for frame in two_shot_frames():
            writer.write(frame)
    return path


def frame_index(dataset, frame):
    """Index of ``frame`` (an array returned by ``load``) in its clip (the fixture's frames are all different)."""
    for clip, frames in dataset.clips:
        for n, candidate in enumerate(frames):
            if np.array_equal(candidate, frame):
                return n
    raise AssertionError("frame not from the dataset's clips")


def test_video_triplets_splits_and_scene_cut(two_shot_video):
    options = dict(max_gap=3, val_fraction=0.25)
    train = VideoTriplets([str(two_shot_video)], "train", **options)
    val = VideoTriplets(str(two_shot_video), "val", **options)
    frames = train.clips[0][1]
    assert len(frames) == 2 * SHOT and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert find_scene_cuts(frames) == [SHOT - 1]
    # per clip: the first 75% of the frames (18 of 24) train, the tail validates; shots split at the cut
    boundary = round(2 * SHOT * 0.75)
    assert train.split_frame == [boundary]
    assert train.shots == [(0, 0, SHOT), (0, SHOT, boundary)]
    assert val.shots == [(0, boundary, 2 * SHOT)]

    train_frames, spans = set(), set()
    for index in range(len(train)):
        for seed in range(30):
            (f0, gt, f1), t = train.load(index, np.random.default_rng(seed))
            i, j, k = (frame_index(train, f) for f in (f0, gt, f1))
            assert i < j < k and k - i <= 2 * options["max_gap"]
            assert (i < SHOT) == (k < SHOT), "a triplet crosses the scene cut"
            assert t == (j - i) / (k - i)
            train_frames |= {i, j, k}
            spans.add(k - i)
    assert spans == set(range(2, 7))
    val_frames = set()
    for index in range(len(val)):
        (f0, gt, f1), t = val.load(index, np.random.default_rng(0))
        i, j, k = (frame_index(val, f) for f in (f0, gt, f1))
        assert (j - i, k - j, t) == (1, 1, 0.5)
        assert (i < SHOT) == (k < SHOT)
        val_frames |= {i, j, k}
    assert train_frames == set(range(boundary))
    assert val_frames == {boundary + d for d in range(0, 2 * SHOT - boundary, 4) for d in (d, d + 1, d + 2)
                          if boundary + d + 2 < 2 * SHOT}
    assert not train_frames & val_frames

    sample = train[(0, 3)]
    (f0, gt, f1), t = train.load(3, np.random.default_rng([train.seed, 0, 3]))
    assert sample["time"].item() == pytest.approx(t)
    np.testing.assert_array_equal((sample["gt"].permute(1, 2, 0).numpy() * 255).round(), gt)


def test_video_triplets_from_a_frame_folder(tmp_path, two_shot_video):
    folder = tmp_path / "frames" / "clip"
    frames = two_shot_frames()
    with open_writer(str(folder), 25, 64, 48) as writer:
        for frame in frames[:SHOT]:
            writer.write(frame)
    # a folder holding a frame folder and a video expands to both clips
    shutil.copy(two_shot_video, tmp_path / "frames" / "video.mp4")
    dataset = VideoTriplets(str(tmp_path / "frames"), "all", crop_size=(32, 32), augment=True)
    assert [os.path.basename(source) for source, _ in dataset.clips] == ["clip", "video.mp4"]
    assert all(np.array_equal(a, b) for a, b in zip(dataset.clips[0][1], frames))      # PNG: lossless
    assert len(dataset.shots) == 3 and len(dataset) == (SHOT - 2) * 3
    assert dataset[(0, 5)]["img0"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="no usable frames"):
        VideoTriplets(str(folder), "val", val_fraction=0.1)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VideoTriplets(str(tmp_path / "nowhere"), "train")


def test_synthetic_textures_never_use_validation_frames(two_shot_video, tmp_path):
    args = parse_args(["--dataset", "videos", "--video_paths", str(two_shot_video), "--synthetic_ratio", "0.5",
                       "--video_cache", str(tmp_path / "cache"),
                       "--crop_h", "32", "--crop_w", "32", "--val_fraction", "0.25", "--max_gap", "3"])
    train, val = build_datasets(args)
    real, synthetic = train.datasets
    assert isinstance(synthetic, SyntheticMotion) and len(synthetic) == len(real)
    frame_textures = [frame_index(real, t) for t in synthetic.textures if t.shape == (48, 64, 3)]
    assert frame_textures, "training frames are used as textures"
    training_part = set(range(round(2 * SHOT * 0.75)))
    assert set(frame_textures) <= training_part, frame_textures
    assert len(val) == 1   # one consecutive triplet every 4 frames of the 6-frame tail


def test_val_stride_and_synthetic_motion_options_reach_the_datasets(two_shot_video, tmp_path):
    common = ["--dataset", "videos", "--video_paths", str(two_shot_video), "--val_fraction", "0.25",
              "--video_cache", str(tmp_path / "cache"),
              "--synthetic_ratio", "0.5"]
    train, every_fourth = build_datasets(parse_args(common))
    mixed_train, every = build_datasets(parse_args(common + ["--val_stride", "1", "--synthetic_min_motion", "3",
                                                             "--synthetic_log_uniform_fraction", "0.5"]))
    synthetic, mixed = train.datasets[1], mixed_train.datasets[1]
    tail = 2 * SHOT - round(2 * SHOT * 0.75)                              # 6 held-out frames: 4 triplets
    assert [i for _, i, _ in every.starts] == list(range(2 * SHOT - tail, 2 * SHOT - 2))
    assert every_fourth.starts == every.starts[::4]
    assert (synthetic.min_translation, mixed.min_translation, mixed.log_uniform_fraction) == (0, 3, 0.5)
    still = build_datasets(parse_args(common + ["--synthetic_static_fraction", "0.3"]))[0].datasets[1]
    assert (synthetic.static_fraction, still.static_fraction) == (0, 0.3)
    with pytest.raises(ValueError, match="val_stride"):
        build_datasets(parse_args(common + ["--val_stride", "0"]))


def test_extra_videos_train_whole_and_never_validate(two_shot_video, tmp_path):
    """--extra_video_paths clips join training with all their frames (tail included); validation is unchanged."""
    extra = tmp_path / "extra"
    with open_writer(str(extra), 25, 64, 48) as writer:
        for frame in two_shot_frames()[:SHOT]:
            writer.write(255 - frame)       # content that appears nowhere in the main clip
    common = ["--dataset", "videos", "--video_paths", str(two_shot_video), "--crop_h", "32", "--crop_w", "32",
              "--val_fraction", "0.25", "--max_gap", "3", "--video_cache", "none"]
    plain_train, plain_val = build_datasets(parse_args(common))
    train, val = build_datasets(parse_args(common + ["--extra_video_paths", str(extra)]))
    main, whole = train.datasets
    assert len(main) == len(plain_train) and len(whole) == SHOT - 2      # every start of the extra shot
    assert whole.shots == [(0, 0, SHOT)]
    assert val.starts == plain_val.starts and len(val.clips) == 1
    index = len(main) + len(whole) - 1                                    # the extra clip's last triplet
    sample = train[(0, index)]
    assert sample["img0"].shape == (3, 32, 32)
    (f0, gt, f1), t = whole.load(SHOT - 3, np.random.default_rng(0))
    assert frame_index(whole, f1) == SHOT - 1                             # its tail is trained on


# ----------------------------------------------------------------------------------------------- synthetic


def test_synthetic_motion_samples():
    dataset = SyntheticMotion(5, (48, 64), max_translation=12.0, seed=2)
    sample = dataset[(0, 1)]
    assert len(dataset) == 5
    for name in ("img0", "img1", "gt"):
        assert sample[name].shape == (3, 48, 64) and sample[name].dtype == torch.float32
        assert 0 <= sample[name].min() and sample[name].max() <= 1
    assert sample["flow"].shape == (4, 48, 64) and sample["flow_valid"].shape == (2, 48, 64)
    assert sample["flow_valid"].eq(1).all()
    assert 0.1 <= sample["time"].item() <= 0.9
    again = dataset[(0, 1)]
    assert all(torch.equal(sample[k], again[k]) for k in sample)
    assert not torch.equal(sample["img0"], dataset[(1, 1)]["img0"])
    assert SyntheticMotion(1, (32, 32), middle_time=0.5)[0]["time"].item() == 0.5


def _layer_translations(dataset, count):
    """Translation lengths (pixels) of the background and of the foreground layers of ``count`` samples."""
    background, foreground = [], []
    for index in range(count):
        layers = dataset._layers(np.random.default_rng([dataset.seed, 0, index, 7]))
        background.append(np.hypot(*layers[0][4]))
        foreground += [np.hypot(*layer[4]) for layer in layers[1:]]
    return np.array(background), np.array(foreground)


def test_synthetic_motion_log_uniform_translation_lengths():
    uniform = SyntheticMotion(1, (32, 32), textures=[np.zeros((8, 8, 3), np.uint8)], max_translation=40.0, seed=4)
    log_uniform = SyntheticMotion(1, (32, 32), textures=uniform.textures, max_translation=40.0,
                                  min_translation=2.0, seed=4)
    background, foreground = _layer_translations(log_uniform, 300)
    assert background.min() >= 1.0 - 1e-9 and background.max() <= 20.0 + 1e-9     # half of [2, 40]
    assert foreground.min() >= 2.0 - 1e-9 and foreground.max() <= 40.0 + 1e-9
    # log-uniform length: log(length) is uniform, so its median is the geometric mean of 2 and 40 (~8.9 px)
    assert abs(np.median(foreground) - np.sqrt(2.0 * 40.0)) < 1.5
    assert abs(np.mean(foreground < np.sqrt(2.0 * 40.0)) - 0.5) < 0.07
    # uniform per axis: |motion| < 8 px has probability pi 8^2 / 80^2 ~ 3% (vs ~43% log-uniform)
    _, uniform_foreground = _layer_translations(uniform, 300)
    assert np.mean(uniform_foreground < 8.0) < 0.08 < 0.35 < np.mean(foreground < 8.0)
    assert np.abs(uniform_foreground).max() <= 40.0 * np.sqrt(2) + 1e-9
    # a mixture: half the layers log-uniform (P(< 8 px) ~ (0.03 + 0.46) / 2); a fraction of 0 gives the uniform draws
    mixed = SyntheticMotion(1, (32, 32), textures=uniform.textures, max_translation=40.0, min_translation=2.0,
                            log_uniform_fraction=0.5, seed=4)
    _, mixed_foreground = _layer_translations(mixed, 300)
    assert 0.17 < np.mean(mixed_foreground < 8.0) < 0.32
    off = SyntheticMotion(1, (32, 32), textures=uniform.textures, max_translation=40.0, min_translation=2.0,
                          log_uniform_fraction=0.0, seed=4)
    assert np.array_equal(_layer_translations(off, 20)[1], _layer_translations(uniform, 20)[1])
    with pytest.raises(ValueError, match="min_translation"):
        SyntheticMotion(1, (32, 32), textures=uniform.textures, max_translation=8.0, min_translation=9.0)
    with pytest.raises(ValueError, match="log_uniform_fraction"):
        SyntheticMotion(1, (32, 32), textures=uniform.textures, min_translation=1.0, log_uniform_fraction=1.5)


def test_synthetic_static_layers():
    """static_fraction 1: nothing moves, so the three frames are identical and the flow is zero; 0.5: about half
    the layers are still (background and foreground alike); 0: every layer moves."""
    textures = [np.random.default_rng(1).integers(0, 256, (40, 40, 3)).astype(np.uint8)]
    still = SyntheticMotion(3, (32, 40), textures=textures, max_translation=12.0, min_translation=2.0,
                            static_fraction=1.0, seed=6)
    for index in range(3):
        sample = still[index]
        assert torch.equal(sample["img0"], sample["gt"]) and torch.equal(sample["img1"], sample["gt"])
        assert sample["flow"].abs().max() == 0
    half = SyntheticMotion(1, (32, 40), textures=textures, max_translation=12.0, min_translation=2.0,
                           static_fraction=0.5, seed=6)
    background, foreground = _layer_translations(half, 300)
    assert 0.4 < np.mean(background == 0) < 0.6 and 0.4 < np.mean(foreground == 0) < 0.6
    moving = SyntheticMotion(1, (32, 40), textures=textures, max_translation=12.0, min_translation=2.0, seed=6)
    assert np.all(_layer_translations(moving, 50)[1] >= 2.0 - 1e-9)
    with pytest.raises(ValueError, match="static_fraction"):
        SyntheticMotion(1, (32, 32), textures=textures, static_fraction=-0.1)


class BackgroundOnly(SyntheticMotion):
    def _layers(self, rng):
        return super()._layers(rng)[:1]


def test_synthetic_flow_warps_frames_onto_each_other():
    """With the background layer only, every pixel's exact flow maps frame 0 onto frame 1 and back."""
    dataset = BackgroundOnly(6, (48, 64), max_translation=12.0, seed=3)
    h, w = dataset.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for index in range(len(dataset)):
        sample = dataset[index]
        img0, img1 = (sample[n].permute(1, 2, 0).numpy() * 255 for n in ("img0", "img1"))
        flow = sample["flow"].permute(1, 2, 0).numpy()
        for source, target, f in ((img1, img0, flow[..., :2]), (img0, img1, flow[..., 2:])):
            map_x, map_y = xs + f[..., 0], ys + f[..., 1]
            inside = (map_x >= 1) & (map_x <= w - 2) & (map_y >= 1) & (map_y <= h - 2)
            inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
            warped = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR)
            error = np.abs(warped - target)[inside].mean()
            unwarped = np.abs(source - target)[inside].mean()
            assert inside.mean() > 0.5
            assert error < 8 and error < 0.25 * unwarped, (index, error, unwarped)


def test_synthetic_integer_translation_is_exact():
    h, w = 40, 56
    dataset = SyntheticMotion(1, (h, w), max_translation=8.0)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h + 40, w + 40, 3)).astype(np.uint8)
    motion = np.array([4.0, -3.0])
    background = (texture, None, np.array([(w + 40) / 2, (h + 40) / 2]), np.array([w / 2, h / 2]) - motion / 2,
                  motion, 0.0, 0.0)
    dataset._layers = lambda rng: [background]
    sample = dataset[0]
    img0, img1 = (np.round(sample[n].permute(1, 2, 0).numpy() * 255) for n in ("img0", "img1"))
    assert np.array_equal(img1[:-3, 4:], img0[3:, :-4])           # img1(p + (4, -3)) == img0(p)
    assert not np.array_equal(img1, img0)
    flow = sample["flow"]
    assert [torch.all(flow[c] == v).item() for c, v in enumerate((4, -3, -4, 3))] == [True] * 4

    # a foreground layer moving differently: exact flow on its pixels, background flow elsewhere
    mask = np.zeros((16, 16), np.uint8)
    cv2.circle(mask, (8, 8), 7, 255, -1)
    foreground = (texture[:16, :16].copy(), mask, np.array([8.0, 8.0]), np.array([20.0, 20.0]),
                  np.array([-5.0, 2.0]), 0.0, 0.0)
    dataset._layers = lambda rng: [background, foreground]
    flow = dataset[0]["flow"].numpy()
    forward = {tuple(v) for v in flow[:2].reshape(2, -1).T}
    assert forward == {(4.0, -3.0), (-5.0, 2.0)}
    on_foreground = (flow[0] == -5)
    assert 80 < on_foreground.sum() < 256
