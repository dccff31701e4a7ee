"""Video I/O (PyAV), scene cuts, and the video interpolation tool on tiny synthetic clips."""
import fractions
import os

import av
import cv2
import numpy as np
import pytest
import torch

import core
from core.video import (FrameFolderReader, SceneCutDetector, VideoReader, duplicate_score, find_scene_cuts,
                        frame_to_rgb, is_folder_output, rgb_to_yuv420p, scene_cut_score, yuv420p_to_rgb)
from tools import interp_video
from core.engine.plan import FrameRateConverter
from core.video import open_reader
from conftest import fixture_path

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "scene_cuts")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random-base.pkl"
    core.save_weights(core.build_model("base"), path)
    return str(path)


def moving_frames(n, width=64, height=48, offset=0.0):
    """A bright disc moving right over a gradient: smooth, so lossy coding changes little."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(n):
        cx, cy = 10 + 3 * i, height / 2
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < (height / 5) ** 2)
        base = 40 + 100 * xx / width + offset
        rgb = np.stack([base + 120 * disc, base + 60 * disc, np.full_like(xx, 90 + offset)], -1)
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return frames


def make_clip(path, frames, fps=25, audio="aac", sample_rate=44100):
    """Write RGB frames to a video with PyAV, with a sine audio track as long as the video."""
    container = av.open(str(path), "w")
    height, width = frames[0].shape[:2]
    video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    stream = None
    if audio:
        stream = container.add_stream(audio, rate=sample_rate)
        stream.layout = "mono"
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        container.mux(video.encode(frame))
    container.mux(video.encode(None))
    if stream is not None:
        total = int(round(sample_rate * len(frames) / fps))
        samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / sample_rate)).astype(np.float32)
        fmt = stream.codec_context.format.name
        for start in range(0, total, 1024):
            chunk = samples[start:start + 1024]
            if fmt.startswith("s16"):
                chunk = (chunk * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format=fmt, layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    container.close()
    return str(path)


def write_folder(folder, frames):
    os.makedirs(folder, exist_ok=True)
    for i, rgb in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"img{i}.png"), np.ascontiguousarray(rgb[..., ::-1]))  # natural order
    return str(folder)


def read_folder(folder):
    return [cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED)[..., ::-1]
            for name in sorted(os.listdir(folder))]


def probe(path):
    """(frames decoded, fps, width, height, video duration, audio codec, audio duration) of a video."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        info = dict(fps=video.average_rate, width=video.codec_context.width, height=video.codec_context.height,
                    audio=audio.codec_context.name if audio else None,
                    audio_duration=float(audio.duration * audio.time_base) if audio and audio.duration else None,
                    video_duration=float(video.duration * video.time_base) if video.duration else None)
        info["frames"] = sum(1 for _ in container.decode(video))
    return info


def run_tool(capsys, *args):
    code = interp_video.main([str(a) for a in args] + ["--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- core.video

def test_yuv420p_conversion_is_opencv_bt601_also_for_odd_sizes():
    rng = np.random.default_rng(0)
    i420 = rng.integers(16, 236, size=(48 * 3 // 2, 64), dtype=np.uint8)
    expected = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    even = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    assert np.array_equal(frame_to_rgb(even), expected)
    odd = av.VideoFrame(63, 47, "yuv420p")  # chroma planes of an odd frame are 32 x 24, as for 64 x 48
    y, u, v = i420[:48], i420[48:60].reshape(24, 32), i420[60:].reshape(24, 32)
    for plane, data in zip(odd.planes, (y[:47, :63], u, v)):
        buffer = np.zeros((plane.height, plane.line_size), np.uint8)
        buffer[:, :plane.width] = data
        plane.update(buffer.tobytes())
    assert np.array_equal(yuv420p_to_rgb(odd), expected[:47, :63])


def test_rgb_yuv_round_trip_and_odd_padding():
    flat = np.zeros((47, 63, 3), np.uint8)
    flat[:] = (200, 120, 40)
    frame = rgb_to_yuv420p(flat)
    assert (frame.width, frame.height) == (64, 48)
    assert np.abs(frame_to_rgb(frame)[:47, :63].astype(int) - flat).max() <= 2


def test_output_kind():
    assert is_folder_output("out/") and is_folder_output("frames") and is_folder_output("a.b.png_dir")
    assert not is_folder_output("clip.mp4") and not is_folder_output("clip.MKV")


def test_reader_gives_fps_size_count_and_audio(tmp_path):
    path = make_clip(tmp_path / "clip.mp4", moving_frames(12))
    with VideoReader(path) as reader:
        assert (reader.fps, reader.width, reader.height, reader.frame_count) == (25, 64, 48, 12)
        assert reader.audio.codec == "aac" and reader.audio.sample_rate == 44100
        assert abs(reader.audio.duration - 0.48) < 0.05
        frames = list(reader)
    assert len(frames) == 12 and frames[0].dtype == np.uint8 and reader.first_frame_time == 0.0
    assert np.abs(frames[3].astype(int) - moving_frames(12)[3]).mean() < 3


def test_without_pyav_videos_are_read_through_opencv(tmp_path):
    """A machine without PyAV (the GPU image) reads videos with OpenCV: same size, rate, count and pictures within
    colour-conversion rounding; writing a video is a one-line VideoError. Run in a process where ``import av``
    fails."""
    import subprocess
    import sys
    path = make_clip(tmp_path / "clip.mp4", moving_frames(12))
    with VideoReader(path) as reader:
        expected = np.stack(list(reader))
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import sys
sys.modules["av"] = None            # import av raises ImportError
import numpy as np
from core.video import OpenCVVideoReader, VideoError, open_reader, open_writer
with open_reader({str(path)!r}) as reader:
    assert isinstance(reader, OpenCVVideoReader)
    assert (reader.fps, reader.width, reader.height, reader.frame_count) == (25, 64, 48, 12), reader.fps
    frames = np.stack(list(reader))
expected = np.load({str(tmp_path / "expected.npy")!r})
assert frames.shape == expected.shape and frames.dtype == np.uint8
assert np.abs(frames.astype(int) - expected).mean() < 1.5, np.abs(frames.astype(int) - expected).mean()
try:
    open_writer({str(tmp_path / "out.mp4")!r}, 25, 64, 48)
except VideoError as error:
    assert "PyAV is not installed" in str(error)
else:
    raise AssertionError("writing without PyAV did not fail")
print("ok")
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_scene_cuts_on_real_clips_fixture():
    """Strips of downscaled bikes.mp4 / carphone frames (tests/fixtures/scene_cuts/README.md)."""
    expected = {"bikes_070-081.png": [5], "bikes_131-142.png": [5], "bikes_094-105.png": [], "carphone_076-087.png": []}
    for name, cuts in expected.items():
        strip = cv2.imread(os.path.join(FIXTURES, name))[..., ::-1]
        height = strip.shape[0] // 12
        frames = [strip[i * height:(i + 1) * height] for i in range(12)]
        assert find_scene_cuts(frames) == cuts, name
    assert scene_cut_score(frames[0], frames[0]) == 0.0


def test_scene_cut_detector_threshold():
    dark, bright = np.full((48, 64, 3), 50, np.uint8), np.full((48, 64, 3), 200, np.uint8)
    detector = SceneCutDetector()
    assert [detector.push(f) for f in (dark, dark, bright, bright)] == [False, False, True, False]
    assert not SceneCutDetector(0).push(dark) and not SceneCutDetector(0).enabled
    assert find_scene_cuts([dark, bright], threshold=0.7) == []


# ---------------------------------------------------------------------------------------------- timing

def fake_interpolate(calls):
    def interpolate(a, b, times):
        calls.append((a, b, list(times)))
        return [(a, b, t) for t in times]
    return interpolate


def convert(frames, ratio, threshold=0):
    calls = []
    converter = FrameRateConverter(fake_interpolate(calls), ratio, threshold)
    out = [o for f in frames for o in converter.push(f)] + converter.finish()
    return out, calls, converter


def test_multi_inserts_frames_and_holds_the_last_to_keep_the_duration():
    out, calls, _ = convert([0, 1, 2, 3, 4], 2)
    assert out == [0, (0, 1, 0.5), 1, (1, 2, 0.5), 2, (2, 3, 0.5), 3, (3, 4, 0.5), 4, 4]
    out, calls, _ = convert([0, 1, 2], 4)
    assert len(out) == 12 and calls[0] == (0, 1, [0.25, 0.5, 0.75])  # one call per pair: motion reused
    assert out[-4:] == [2, 2, 2, 2]


def test_fps_maps_output_times_to_source_times():
    out, calls, _ = convert(list(range(12)), fractions.Fraction(60, 25))  # 25 -> 60 fps
    assert len(out) == 29  # round(12 * 60 / 25): 0.4833 s vs 0.48 s
    for j, frame in enumerate(out[:26]):
        s = fractions.Fraction(j * 25, 60)
        expected = int(s) if s.denominator == 1 else (int(s), int(s) + 1, pytest.approx(float(s - int(s))))
        assert frame == expected, j
    assert all(len(c[2]) >= 1 for c in calls) and len(calls) == 11
    out, calls, _ = convert(list(range(10)), fractions.Fraction(2, 5))  # 25 -> 10 fps
    assert out == [0, (2, 3, 0.5), 5, (7, 8, 0.5)]


def test_cut_repeats_the_frame_before_it():
    dark, bright = np.full((8, 8, 3), 50, np.uint8), np.full((8, 8, 3), 200, np.uint8)
    out, calls, converter = convert([dark, dark, bright, bright], 2, threshold=0.1)
    assert converter.cuts == [1] and len(calls) == 2
    assert out[3] is dark and out[4] is bright  # held across the cut; the new shot starts on time


# ---------------------------------------------------------------------------------------------- the tool

def test_multi2_video_keeps_duration_and_audio(tmp_path, capsys, checkpoint):
    source = make_clip(tmp_path / "in.mp4", moving_frames(12))
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "out.mp4", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 0, err
    src, res = probe(source), probe(tmp_path / "out.mp4")
    assert res["frames"] == 2 * src["frames"] == 24 and res["fps"] == 50
    assert (res["width"], res["height"]) == (64, 48)
    assert abs(res["frames"] / 50 - src["frames"] / 25) < 1 / 50
    assert abs(res["video_duration"] - src["video_duration"]) < 1 / 50
    assert res["audio"] == "aac" and abs(res["audio_duration"] - src["audio_duration"]) < 0.03
    assert "audio copied" in out


def test_audio_is_reencoded_when_the_container_cannot_hold_it(tmp_path, capsys, checkpoint):
    if not {"libopus", "opus"} & set(av.codecs_available) or "libvpx-vp9" not in av.codecs_available:
        pytest.skip("no VP9 / Opus encoder in this PyAV build")
    source = make_clip(tmp_path / "in.mkv", moving_frames(12), audio="pcm_s16le")
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "out.webm", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 0, err
    res = probe(tmp_path / "out.webm")
    assert res["frames"] == 24 and res["audio"] == "opus"
    with av.open(str(tmp_path / "out.webm")) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert abs(samples / 48000 - 0.48) < 0.05


def test_hard_cut_is_not_morphed(tmp_path, capsys, checkpoint):
    frames = moving_frames(3) + moving_frames(3, offset=110)[::-1]  # two unrelated shots
    source = write_folder(tmp_path / "in", frames)
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "out", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 0, err
    result = read_folder(tmp_path / "out")
    assert len(result) == 12 and "1 scene cut(s) after input frame(s) 2" in out
    for k in range(6):
        assert np.array_equal(result[2 * k], frames[k])
    assert np.array_equal(result[5], frames[2])  # the frame inserted at the cut repeats the last of shot 1
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "morph", "--multi", "2",
                              "--model_file", checkpoint, "--scene_threshold", "0")
    morphed = read_folder(tmp_path / "morph")[5]
    assert code == 0 and not np.array_equal(morphed, frames[2]) and not np.array_equal(morphed, frames[3])


def test_png_folders_multi4_and_fps(tmp_path, capsys, checkpoint):
    source = write_folder(tmp_path / "in", moving_frames(6))
    code, out, err = run_tool(capsys, "--input", source, "--output", str(tmp_path / "x4") + "/", "--multi", "4",
                              "--model_file", checkpoint)
    assert code == 0, err
    names = sorted(os.listdir(tmp_path / "x4"))
    assert len(names) == 24 and names[0] == "frame_000000.png" and names[-1] == "frame_000023.png"
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "f60", "--fps", "60",
                              "--input_fps", "25", "--model_file", checkpoint)
    assert code == 0, err
    assert len(os.listdir(tmp_path / "f60")) == 14  # round(6 * 60 / 25)
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "x4.mp4", "--multi", "4",
                              "--input_fps", "12.5", "--model_file", checkpoint)
    assert code == 0, err
    res = probe(tmp_path / "x4.mp4")
    assert res["frames"] == 24 and res["fps"] == 50 and res["audio"] is None


def test_odd_size(tmp_path, capsys, checkpoint):
    frames = [f[:47, :63] for f in moving_frames(6)]
    source = write_folder(tmp_path / "in", frames)
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "out.mp4", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 0, err
    res = probe(tmp_path / "out.mp4")
    assert (res["width"], res["height"], res["frames"]) == (64, 48, 12)
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "png", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 0, err
    result = read_folder(tmp_path / "png")
    assert len(result) == 12 and result[1].shape == (47, 63, 3)
    with FrameFolderReader(tmp_path / "png") as reader:
        assert (reader.width, reader.height, reader.frame_count) == (63, 47, 12)


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys, checkpoint):
    source = write_folder(tmp_path / "in", moving_frames(4))
    mixed = write_folder(tmp_path / "mixed", moving_frames(3) + [moving_frames(1, 32, 24)[0]])
    os.makedirs(tmp_path / "empty")
    busy = write_folder(tmp_path / "busy", moving_frames(1))
    large = tmp_path / "large.pkl"
    torch.save(core.build_model("large").state_dict(), large)   # official style: no recorded options
    not_video = tmp_path / "clip.mp4"
    not_video.write_text("not a video")
    model = ["--model_file", checkpoint]
    cases = [
        (["--input", tmp_path / "missing.mp4", "--output", tmp_path / "o.mp4", "--multi", "2", *model], "not found"),
        (["--input", not_video, "--output", tmp_path / "o.mp4", "--multi", "2", *model], "clip.mp4"),
        (["--input", source, "--output", tmp_path / "o", "--multi", "1", *model], "--multi"),
        (["--input", source, "--output", tmp_path / "o", "--multi", "2", "--scene_threshold", "2", *model],
         "--scene_threshold"),
        (["--input", tmp_path / "empty", "--output", tmp_path / "o", "--multi", "2", *model], "no frame images"),
        (["--input", mixed, "--output", tmp_path / "o1", "--multi", "2", *model], "frame sizes differ"),
        (["--input", source, "--output", busy, "--multi", "2", *model], "already holds PNG files"),
        (["--input", source, "--output", source, "--multi", "2", *model], "same path"),
        (["--input", source, "--output", tmp_path / "o2", "--multi", "2", "--model_file", large], "does not fit"),
    ]
    for args, words in cases:
        code, out, err = run_tool(capsys, *args)
        assert code == 2, (args, err)
        lines = [line for line in err.strip().splitlines() if not line.startswith("loaded ")]   # the weights used
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, err)
        assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:  # argparse: bad rate
        interp_video.main(["--input", source, "--output", "o", "--fps", "0"])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------------------------------------- issue 28: montage,
# duplicates, time ranges, folders of videos, output checks

def test_duplicate_pairs_repeat_the_frame_and_are_counted():
    a, b, c = (np.full((8, 8, 3), v, np.uint8) for v in (50, 90, 130))
    a2 = a.copy()
    a2[0, 0] = 52  # coding noise: a duplicate all the same
    calls = []
    converter = FrameRateConverter(fake_interpolate(calls), 2, scene_threshold=0, dup_threshold=0.02)
    out = [o for f in (a, a2, b, b, c) for o in converter.push(f)] + converter.finish()
    assert converter.duplicates == [0, 2] and converter.interpolated == 2 and len(out) == 10
    assert out[1] is a and out[5] is b and [call[:2] for call in calls] == [(a2, b), (b, c)]
    out, calls, converter = convert([a, a, b], 2, threshold=0)  # dup_threshold 0: off
    assert converter.duplicates == [] and len(calls) == 2
    assert duplicate_score(a, a2) < 0.02 < duplicate_score(a, b)


def test_time_parsing():
    parse = interp_video.parse_time
    assert parse("12.5") == fractions.Fraction(25, 2) and parse("1:30") == 90 and parse("90:00") == 5400
    assert parse("01:02:03.250") == 3723 + fractions.Fraction(1, 4) and parse("0") == 0
    for bad in ("-1", "1:60", "1:2:3:4", "abc", "", "1e3"):
        with pytest.raises(Exception):
            parse(bad)


def test_montage_puts_the_held_input_left_of_the_result(tmp_path, capsys, checkpoint):
    frames = moving_frames(4)
    source = write_folder(tmp_path / "in", frames)
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "m", "--multi", "2", "--montage",
                              "--model_file", checkpoint)
    assert code == 0, err
    result = read_folder(tmp_path / "m")
    assert len(result) == 8 and all(r.shape == (48, 128, 3) for r in result) and "montage" in out
    for j, frame in enumerate(result):
        assert np.array_equal(frame[:, :64], frames[j // 2]), j  # the input, held at the output rate
        if j % 2 == 0 or j == 7:
            assert np.array_equal(frame[:, 64:], frames[j // 2]), j
    assert not np.array_equal(result[1][:, 64:], frames[0])  # interpolated
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "m.mp4", "--multi", "2",
                              "--montage", "--model_file", checkpoint)
    res = probe(tmp_path / "m.mp4")
    assert code == 0 and (res["width"], res["height"], res["frames"]) == (128, 48, 8)


def test_duplicate_frames_of_a_video_are_repeated_not_interpolated(tmp_path, capsys, checkpoint):
    distinct = moving_frames(3)
    source = make_clip(tmp_path / "dups.mp4", [distinct[0], distinct[0], distinct[1], distinct[1], distinct[2]],
                       audio=None)  # animation "on twos", through a real encoder
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "out", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 0, err
    assert "2 frames interpolated" in out and "0 scene cut(s); 2 duplicate pair(s) skipped" in out
    result = read_folder(tmp_path / "out")
    assert len(result) == 10
    assert np.array_equal(result[1], result[0]) and np.array_equal(result[5], result[4])  # repeated
    assert not np.array_equal(result[3], result[2])  # (1, 2) differ: interpolated


def test_start_end_select_frames_and_keep_the_audio_of_the_range(tmp_path, capsys, checkpoint):
    frames = moving_frames(12)
    source = make_clip(tmp_path / "in.mp4", frames)  # 25 fps, 0.48 s of audio
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "part.mp4", "--multi", "2",
                              "--start", "0.16", "--end", "00:00.4", "--model_file", checkpoint)
    assert code == 0, err
    res = probe(tmp_path / "part.mp4")
    assert res["frames"] == 12 and "input frames 4 to 9" in out  # ceil(0.4 * 25) - ceil(0.16 * 25) = 6 -> x2
    assert res["audio"] == "aac" and abs(res["audio_duration"] - 0.24) < 0.05, res
    with VideoReader(tmp_path / "part.mp4") as reader:
        first = next(iter(reader))
    errors = [np.abs(first.astype(int) - f).mean() for f in frames]
    assert int(np.argmin(errors)) == 4
    source_png = write_folder(tmp_path / "png", frames[:6])
    code, out, err = run_tool(capsys, "--input", source_png, "--output", tmp_path / "tail", "--multi", "2",
                              "--start", "0.1", "--model_file", checkpoint)  # frames 3, 4, 5
    assert code == 0 and len(os.listdir(tmp_path / "tail")) == 6, err
    code, out, err = run_tool(capsys, "--input", source, "--output", tmp_path / "none.mp4", "--multi", "2",
                              "--start", "3", "--model_file", checkpoint)
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: --start 3.000 s is past the end"), err
    assert not os.path.exists(tmp_path / "none.mp4")


def test_folder_of_videos_one_output_each_a_bad_one_reported(tmp_path, capsys, checkpoint):
    videos = tmp_path / "videos"
    os.makedirs(videos)
    make_clip(videos / "good.mkv", moving_frames(3), audio=None)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    (videos / "notes.txt").write_text("not a video")
    code, out, err = run_tool(capsys, "--input", videos, "--output", tmp_path / "out", "--multi", "2",
                              "--model_file", checkpoint)
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: broken.mp4: ") and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path / "out")) == ["good.mkv"] and probe(tmp_path / "out" / "good.mkv")["frames"] == 6
    assert "done: 1 of 2 video(s) written" in out and "1 failed: broken.mp4" in out
    code, out, err = run_tool(capsys, "--input", videos, "--output", tmp_path / "out", "--multi", "2",
                              "--model_file", tmp_path / "missing.pkl")  # outputs checked before the model
    assert code == 2 and "exist already" in err and "--overwrite" in err
    args = interp_video.parse_args(["--input", str(videos), "--output", str(tmp_path / "o2"), "--multi", "2",
                                    "--output_ext", "webm"])
    interp_video._check_arguments(args)
    jobs = interp_video._batch_jobs(args, [str(videos / "broken.mp4"), str(videos / "good.mkv")])
    assert [os.path.basename(target) for _, target in jobs] == ["broken.webm", "good.webm"]


def _can_create_a_file_in(folder):
    import tempfile
    try:
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def test_bad_output_fails_before_decoding_or_loading_the_model(tmp_path, capsys):
    broken = tmp_path / "broken.mp4"  # decoding it would fail, and the model file does not exist:
    broken.write_text("not a video")  # the output error must come first
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    exists = tmp_path / "exists.mp4"
    exists.write_text("old")
    cases = [
        (a_file / "out.mp4", "is not a folder"),
        (str(a_file / "frames") + "/", "is not a folder"),
        (tmp_path / "missing" / "out.mp4", "does not exist"),
        (exists, "exists; pass --overwrite"),
        (broken, "same path"),
    ]
    if os.path.isdir("/sys") and not _can_create_a_file_in("/sys"):  # read-only even for root (Linux)
        cases.append(("/sys/out.mp4", "cannot write to output folder /sys"))
    for output, words in cases:
        code, out, err = run_tool(capsys, "--input", broken, "--output", output, "--multi", "2",
                                  "--model_file", tmp_path / "missing.pkl")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (output, err)
        assert out == ""  # nothing started
    assert exists.read_text() == "old" and not os.path.exists(tmp_path / "missing")
    for extra, words in ((["--start", "2", "--end", "1"], "--end"), (["--output_ext", "mp4"], "--output_ext"),
                         (["--dup_threshold", "-1"], "--dup_threshold")):
        code, out, err = run_tool(capsys, "--input", broken, "--output", tmp_path / "o.mp4", "--multi", "2", *extra)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (extra, err)
    code, out, err = run_tool(capsys, "--input", broken, "--output", exists, "--multi", "2", "--overwrite",
                              "--model_file", tmp_path / "missing.pkl")
    assert code == 2 and "broken.mp4" in err  # --overwrite passes the check; then the input fails
    assert exists.read_text() == "old"  # ... before the old output is touched




def test_encoding_the_same_frames_gives_the_same_bits(tmp_path):
    """Segments of a resumed job must equal an uninterrupted run's, so x264's output must be a function of its
    input. With its macroblock-tree rate control, PyAV 18.1's x264 encoded some 24-frame segments of this clip in
    two ways from one run to the next (core.video turns mbtree off). Segments encoded on a thread, as the engine's
    encoder thread does."""
    import hashlib
    import threading

    from core.video import VideoWriter

    with open_reader(fixture_path(os.path.join("encoder", "bikes_000-047.mp4"))) as reader:
        frames = list(reader)
    assert len(frames) == 48 and frames[0].shape == (68, 160, 3)
    encodings = {0: set(), 1: set()}

    def encode_segments():
        for segment in (0, 1):
            path = tmp_path / f"segment{segment}.mp4"
            with VideoWriter(str(path), fractions.Fraction(60000, 1001), 160, 68) as writer:
                for frame in frames[24 * segment:24 * segment + 24]:
                    writer.write(frame)
            with av.open(str(path)) as container:
                packets = [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]
            encodings[segment].add(hashlib.sha256(b"".join(packets)).hexdigest())

    for _ in range(4):
        thread = threading.Thread(target=encode_segments)
        thread.start()
        thread.join()
    assert [len(v) for v in encodings.values()] == [1, 1]
