"""Own-video training data at scale: every container PyAV decodes is found and read, the on-disk frame cache
(tools.prepare_videos) equals decoding in memory and resumes, whole held-out clips validate, and unreadable
samples are skipped by training (counted) until too many are. Every clip is made in tmp_path."""
import json
import os
import pickle
import re
import sys

import av
import numpy as np
import pytest
import skimage.data
import torch

from core.data import VideoTriplets
from core.data.video_cache import CachedFrames, cut_indices, prepare_cache, read_manifest
from core.data.video_frames import list_video_sources, read_all_frames
from core.frames import write_image
from core.video import find_scene_cuts, is_video_file
from test_training import make_vimeo, run_train, tiny_args
from tools import prepare_videos
from tools.train import build_datasets, parse_args

H, W = 48, 64


def pan_frames(count, image=None, step=3):
    """``count`` frames of a window panning over a photo (then a cut to another photo if ``image`` is given)."""
    image = skimage.data.astronaut() if image is None else image
    return [np.ascontiguousarray(image[100:100 + H, 100 + step * k:100 + step * k + W]) for k in range(count)]


def write_clip(path, frames, codec, container_format=None):
    """Encode RGB frames with PyAV (the way users' files are made), 25 fps, yuv420p."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


CONTAINERS = {"clip.mpg": ("mpeg1video", "mpeg"), "clip.ts": ("mpeg2video", "mpegts"),
              "clip.flv": ("flv", "flv"), "clip.wmv": ("wmv2", "asf"), "clip.y4m": ("rawvideo", "yuv4mpegpipe"),
              "clip_without_known_extension.video": ("mpeg2video", "mpegts")}


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A folder as users have them: videos in several containers, a grey JPEG frame folder, and files that are
    not videos (a README, a lone image, an empty sub-folder)."""
    root = tmp_path_factory.mktemp("clips")
    for name, (codec, container_format) in CONTAINERS.items():
        write_clip(root / name, pan_frames(8), codec, container_format)
    grey = root / "grey_frames"
    grey.mkdir()
    for k, frame in enumerate(pan_frames(6)):
        write_image(str(grey / f"f{k}.jpg"), np.repeat(frame.mean(2, keepdims=True).astype(np.uint8), 3, 2))
    (root / "README.md").write_text("clips for a test\n")
    write_image(str(root / "poster.png"), pan_frames(1)[0])
    (root / "empty").mkdir()
    return root


def test_every_container_and_frame_folder_is_found_and_read(clip_folder):
    sources = list_video_sources(str(clip_folder))
    assert sorted(os.path.basename(s) for s in sources) == sorted([*CONTAINERS, "grey_frames"])
    assert not is_video_file(str(clip_folder / "README.md")) and not is_video_file(str(clip_folder / "poster.png"))
    for source in sources:
        frames = read_all_frames(source)
        assert len(frames) == (6 if source.endswith("grey_frames") else 8), source
        assert frames[0].shape == (H, W, 3) and frames[0].dtype == np.uint8
        # lossy codecs: close to the encoded frames
        expected = pan_frames(8)[3]
        if source.endswith("grey_frames"):
            expected = np.repeat(expected.mean(2, keepdims=True), 3, 2)
            assert np.array_equal(frames[3][..., 0], frames[3][..., 2])
        assert np.abs(frames[3].astype(float) - expected).mean() < 12, source


def two_shot_clip(path):
    frames = pan_frames(10) + pan_frames(10, skimage.data.coffee())
    return write_clip(path, frames, "mpeg2video", "mpegts"), frames


def test_cache_equals_decoding_in_memory_and_resumes(tmp_path):
    clip, _ = two_shot_clip(tmp_path / "two_shots.ts")
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(pan_frames(5)):
        write_image(str(folder / f"{k:03d}.png"), frame)
    cache = str(tmp_path / "cache")
    entries = prepare_cache([clip, str(folder)], cache, progress=False)
    for source, entry in zip([clip, str(folder)], entries):
        decoded = read_all_frames(source)
        cached = CachedFrames(cache, entry)
        assert len(cached) == entry["frames"] == len(decoded)
        assert all(np.array_equal(a, b) for a, b in zip(cached, decoded))
        assert cut_indices(entry, 0.1) == find_scene_cuts(decoded, 0.1)
        assert (entry["width"], entry["height"], entry["fps"]) == (W, H, 25.0)
    assert cut_indices(entries[0], 0.1) == [9] and cut_indices(entries[0], 0) == []
    # a worker process reads the same frames (the file is reopened after unpickling)
    cached = pickle.loads(pickle.dumps(CachedFrames(cache, entries[0])))
    loader = torch.utils.data.DataLoader(cached, batch_size=None, num_workers=1)
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(loader, cached))
    with pytest.raises(IndexError):
        cached[len(cached)]

    # resumable: a second preparation decodes nothing; a changed source and a missing data file are redone,
    # and a half-written clip (.partial) never counts
    data = os.path.join(cache, entries[0]["file"])
    stamp = os.stat(data).st_mtime_ns
    assert prepare_cache([clip, str(folder)], cache, progress=False) == entries
    assert os.stat(data).st_mtime_ns == stamp
    write_clip(clip, pan_frames(7), "mpeg2video", "mpegts")
    os.remove(os.path.join(cache, entries[1]["file"]))
    with open(os.path.join(cache, "leftover.rgb.partial"), "wb") as f:
        f.write(b"\0" * 100)
    again = prepare_cache([clip, str(folder)], cache, progress=False)
    assert again[0]["frames"] == 7 and again[1] == entries[1]
    assert sorted(read_manifest(cache)) == sorted(e["file"][:-4] for e in again)
    with open(os.path.join(cache, "manifest.json")) as f:
        assert json.load(f)["clips"][again[0]["file"][:-4]]["source"] == os.path.abspath(clip)


def test_prepare_videos_tool_reports_the_cache(clip_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert prepare_videos.main(["--videos", str(clip_folder), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"{len(CONTAINERS) + 1} clips, {8 * len(CONTAINERS) + 6} frames" in out
    assert re.search(r"clip\.mpg: 8 frames 64x48 at 25\.000 fps, cuts after none", out)
    (tmp_path / "file").write_text("")
    assert prepare_videos.main(["--videos", str(clip_folder), "--cache", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_cached_and_in_memory_datasets_give_the_same_samples(tmp_path):
    clip, _ = two_shot_clip(tmp_path / "two_shots.ts")
    options = dict(crop_size=(32, 32), augment=True, max_gap=3, seed=3)
    memory = VideoTriplets(clip, "train", **options)
    cached = VideoTriplets(clip, "train", cache_dir=str(tmp_path / "cache"), **options)
    assert memory.shots == cached.shots and memory.starts == cached.starts
    for key in [(0, 0), (1, 5), (2, len(memory) - 1)]:
        a, b = memory[key], cached[key]
        assert all(torch.equal(a[name], b[name]) for name in a), key


def test_whole_held_out_clips_validate_at_several_gaps_and_never_train(tmp_path):
    train_clip = write_clip(tmp_path / "train.ts", pan_frames(16), "mpeg2video", "mpegts")
    held_out = write_clip(tmp_path / "held_out.ts", pan_frames(16, skimage.data.coffee()), "mpeg2video", "mpegts")
    args = parse_args(["--dataset", "videos", "--video_paths", str(tmp_path), "--val_video_paths", held_out,
                       "--val_gaps", "1", "4", "--val_stride", "2", "--crop_h", "32", "--crop_w", "32",
                       "--video_cache", str(tmp_path / "cache")])
    train, val = build_datasets(args)
    assert [os.path.basename(s) for s, _ in train.clips] == ["train.ts"]   # the held-out clip is left out
    assert train.shots == [(0, 0, 16)] and len(train) == 14                  # whole clip, tail included
    assert [os.path.basename(s) for s, _ in val.clips] == ["held_out.ts"]
    # gap 1: first frames 0, 2, ..., 12 (i + 2 < 16); gap 4: 0, 2, ..., 6 (i + 8 < 16)
    assert val.starts == [(0, i, 1) for i in range(0, 14, 2)] + [(0, i, 4) for i in range(0, 8, 2)]
    (f0, gt, f1), t = val.load(len(val) - 1, None)
    frames = val.clips[0][1]
    assert t == 0.5 and np.array_equal(f0, frames[6]) and np.array_equal(gt, frames[10])
    assert np.array_equal(f1, frames[14])
    # gap 0: still triplets, every first frame 0, 5, 10, 15; the frame is its own middle
    still = VideoTriplets(held_out, "all", fixed=True, val_gaps=(0,), val_stride=5)
    assert still.starts == [(0, i, 0) for i in (0, 5, 10, 15)]
    (f0, gt, f1), t = still.load(3, None)
    assert t == 0.5 and all(np.array_equal(f, still.clips[0][1][15]) for f in (f0, gt, f1))
    with pytest.raises(ValueError, match="val_gaps"):
        VideoTriplets(held_out, "all", fixed=True, val_gaps=(-1,))


# ----------------------------------------------------------------------------- unreadable training samples


def test_training_skips_an_unreadable_frame_and_counts_it(tmp_path):
    root = make_vimeo(str(tmp_path / "vimeo"), n_train=8)
    bad = os.path.join(root, "sequences", "00001", "0002", "im2.png")
    with open(bad, "wb") as f:
        f.write(b"truncated")
    log_root = str(tmp_path / "log")
    result = run_train(tiny_args(root, log_root, "skip", steps=8, max_skip_fraction=0.5), cwd=str(tmp_path))
    assert "skipping an unreadable training sample" in result.stderr and bad in result.stderr
    log = open(os.path.join(log_root, "skip", "runtime.log")).read()
    assert re.search(r"step 8/8 .*\| [1-9]\d* unreadable samples skipped", log), log[-2000:]
    assert "finished at step 8" in log


def test_training_stops_clearly_when_much_of_the_data_is_unreadable(tmp_path):
    root = make_vimeo(str(tmp_path / "vimeo"), n_train=8)
    for key in ("00001/0001", "00001/0002", "00001/0003", "00001/0004"):
        with open(os.path.join(root, "sequences", key, "im1.png"), "wb") as f:
            f.write(b"")
    log_root = str(tmp_path / "log")
    result = run_train(tiny_args(root, log_root, "fail", steps=40), cwd=str(tmp_path), check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: \d+ of the \d+ training samples drawn by this process could not be read .*"
                        r"the warnings above name the files; .*last\.pt holds step \d+", last_line), last_line
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ held-out sets and measurement


def test_make_benchmark_sets_stride_spreads_small_sets_over_whole_clips(tmp_path):
    from tools import make_benchmark_sets
    clip = write_clip(tmp_path / "clip.ts", pan_frames(40), "mpeg2video", "mpegts")
    out = tmp_path / "sets"
    assert make_benchmark_sets.main(["--videos", clip, "--out", str(out), "--split", "all", "--stride", "10",
                                     "--xtest_stride", "5"]) == 0
    assert (out / "vimeo90k" / "tri_testlist.txt").read_text().split() == [f"clip/{i:05d}" for i in (0, 10, 20, 30)]
    snu = {mode: (out / "snufilm" / "eval_modes" / f"test-{mode}.txt").read_text().splitlines()
           for mode in ("easy", "extreme")}
    assert [line.split()[0] for line in snu["easy"]] == [f"frames/clip/{i:05d}.png" for i in (0, 10, 20, 30)]
    assert snu["extreme"] == ["frames/clip/00000.png frames/clip/00008.png frames/clip/00016.png",
                              "frames/clip/00010.png frames/clip/00018.png frames/clip/00026.png",
                              "frames/clip/00020.png frames/clip/00028.png frames/clip/00036.png"]
    assert [p.name for p in (out / "xtest" / "clip").iterdir()] == ["00000"]     # windows at least 33 apart
    assert make_benchmark_sets.main(["--videos", clip, "--out", str(out), "--stride", "0"]) == 2


def test_peak_memory_counts_child_processes(capfd):
    from tools import peak_memory
    child = "import numpy as np, time; a = np.ones(40_000_000); time.sleep(1.5)"   # 305 MiB
    parent = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {child!r}]) + 3)"
    assert peak_memory.main(["--interval", "0.1", "--", sys.executable, "-c", parent]) == 3
    line = capfd.readouterr().err.strip().splitlines()[-1]
    pss, rss = map(float, re.search(r"([\d.]+) GiB PSS, ([\d.]+) GiB RSS", line).groups())
    assert 0.3 < pss <= rss < 2 and "up to 2 processes" in line


def test_data_speed_times_the_training_loader(tmp_path, capsys):
    from tools import data_speed
    clip = write_clip(tmp_path / "clip.ts", pan_frames(20), "mpeg2video", "mpegts")
    assert data_speed.main(["--workers", "0", "1", "--batches", "2", "--", "--dataset", "videos", "--video_paths",
                            clip, "--crop_h", "32", "--crop_w", "32", "--batch_size", "2",
                            "--video_cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^0 worker\(s\): [\d.]+ samples/s", out, re.M) and re.search(r"^1 worker\(s\): [\d.]+", out, re.M)
