"""The VapourSynth front (core/vapoursynth.py, issue 34).

They need VapourSynth, whose wheel needs Python >= 3.12 (``bash .ci/setup_vapoursynth.sh`` builds .venv312). In an
interpreter without it, test_in_the_vapoursynth_environment runs this file in .venv312's Python (or $UPR_PYTHON312)
and the other tests skip here; without such an environment everything skips, or fails when UPR_REQUIRE_FRONTS=1
(CI). The clip is tests/fixtures/vapoursynth/bikes_24-33.mp4: 10 frames of bikes.mp4 at 128x54 with a scene cut
after local frame 5.
"""
import fractions
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from core import vapoursynth as upr
from core.engine import VideoJobOptions, convert_video
from core.video import open_reader
from conftest import fixture_path, missing_front

try:
    import vapoursynth as vs
except ImportError:
    vs = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = fixture_path(os.path.join("vapoursynth", "bikes_24-33.mp4"))
CUT_AFTER = 5


def vapoursynth_python():
    """The interpreter of the VapourSynth environment: $UPR_PYTHON312, else .venv312's, else None."""
    path = os.environ.get("UPR_PYTHON312") or os.path.join(REPO, ".venv312", "bin", "python")
    return path if os.path.isfile(path) else None


def test_in_the_vapoursynth_environment():
    """Where this interpreter has no VapourSynth (Python < 3.12), this file's tests run in the 3.12 environment."""
    if vs is not None:
        pytest.skip("VapourSynth is importable here: the tests below run in this interpreter")
    python = vapoursynth_python()
    if python is None:
        missing_front("no VapourSynth environment: run `bash .ci/setup_vapoursynth.sh` (builds .venv312)")
    env = dict(os.environ, UPR_REQUIRE_FRONTS="1")
    done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.abspath(__file__)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


@pytest.fixture
def needs_vs():
    if vs is None:
        if vapoursynth_python():
            pytest.skip("no VapourSynth in this Python: test_in_the_vapoursynth_environment runs this in .venv312")
        missing_front("VapourSynth is not installed in this Python (it needs >= 3.12): "
                      "run `bash .ci/setup_vapoursynth.sh` and use the interpreter it prints")


@pytest.fixture(scope="module")
def interpolator():
    import core
    return core.Interpolator.from_checkpoint(device="cpu")


class CountingInterpolator:
    """Passes calls to an Interpolator and records the times asked for in each."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.device = inner.device

    def interpolate_tensors(self, img0, img1, times):
        self.calls.append(list(times))
        return self.inner.interpolate_tensors(img0, img1, times)


def clip_frames(clip, order=None):
    """Frames of a clip as 3 x H x W arrays, requested in ``order`` (default: in order), returned by index."""
    order = range(clip.num_frames) if order is None else order
    frames = {}
    for n in order:
        frame = clip.get_frame(n)
        frames[n] = np.stack([np.asarray(frame[p]) for p in range(3)])
    return [frames[n] for n in sorted(frames)]


def planar(image):
    return np.ascontiguousarray(np.moveaxis(image, -1, 0))


def max_difference(a, b):
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


# ---------------------------------------------------------------------------------------------- vspipe

def test_vspipe_equals_the_video_engine(needs_vs, interpolator, tmp_path):
    """A .vpy run by vspipe (25 -> 60 fps, sc=True) gives the video engine's frames on the same clip."""
    script = tmp_path / "upr.vpy"
    script.write_text("import sys\n"
                      f"sys.path.insert(0, {REPO!r})\n"
                      "import vapoursynth as vs\n"
                      "from core import vapoursynth as upr\n"
                      f"clip = upr.source({CLIP!r})\n"
                      "clip = upr.interpolate(clip, fps_num=60, sc=True, device='cpu')\n"
                      "clip.set_output()\n")
    vspipe = os.path.join(os.path.dirname(sys.executable), "vspipe")
    raw = tmp_path / "out.rgb"
    done = subprocess.run([vspipe, str(script), str(raw)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    width, height, count = 128, 54, 24            # round(10 * 60 / 25)
    data = np.fromfile(raw, np.uint8)
    assert data.size == count * 3 * height * width
    vspipe_frames = data.reshape(count, 3, height, width)[:, [2, 0, 1]]   # vspipe writes RGB as G, B, R planes

    png = tmp_path / "png"      # the video engine (tools.interp_video --fps 60 --output png/), its default thresholds
    convert_video(CLIP, f"{png}/", VideoJobOptions(fps=fractions.Fraction(60)), interpolator)
    with open_reader(str(png)) as reader:
        tool_frames = [planar(frame) for frame in reader]
    assert len(tool_frames) == count
    for n, (a, b) in enumerate(zip(vspipe_frames, tool_frames)):
        assert max_difference(a, b) <= 1, f"frame {n}"
    # the cut after frame 5 (s in (5, 6): frames 13 and 14) is held: exactly source frame 5
    with open_reader(CLIP) as reader:
        source = [planar(frame) for frame in reader]
    assert np.array_equal(vspipe_frames[13], source[CUT_AFTER]) and np.array_equal(vspipe_frames[14], source[5])
    assert max_difference(vspipe_frames[3], source[1]) > 10        # s = 1.25: interpolated, not a copy


def test_vspipe_reports_a_yuv_clip(needs_vs, tmp_path):
    script = tmp_path / "yuv.vpy"
    script.write_text("import vapoursynth as vs\n"
                      "from core import vapoursynth as upr\n"
                      "clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=4)\n"
                      "upr.interpolate(clip).set_output()\n")
    vspipe = os.path.join(os.path.dirname(sys.executable), "vspipe")
    done = subprocess.run([vspipe, str(script), "--info"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")' in done.stderr + done.stdout


# ---------------------------------------------------------------------------------------------- in process

def test_source_frames_and_random_access(needs_vs, tmp_path, monkeypatch):
    with open_reader(CLIP) as reader:
        expected = [planar(frame) for frame in reader]
    opened = []
    monkeypatch.setattr(upr, "open_reader", lambda *args: opened.append(args) or open_reader(*args))
    clip = upr.source(CLIP)
    assert (clip.num_frames, clip.width, clip.height, clip.fps) == (10, 128, 54, 25)
    assert clip.format.id == vs.RGB24
    order = [7, 2, 9, 0, 8, 1, 3, 6, 5, 4]
    got = clip_frames(clip, order)
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)
    assert len(opened) == 2            # one decode to count, one pass (every frame is still kept)
    # a frame before the kept ones decodes again from the start
    monkeypatch.setattr(upr, "SOURCE_FRAMES_KEPT", 2)
    clip = upr.source(CLIP)
    assert [max_difference(a, expected[n]) for n, a in zip([1, 9], clip_frames(clip, [9, 1]))] == [0, 0]
    assert len(opened) == 2 + 3
    # a folder of frames, at the rate given
    folder = tmp_path / "frames"
    folder.mkdir()
    from core.frames import write_image
    for index in (0, 1, 2):
        write_image(str(folder / f"f{index}.png"), np.moveaxis(expected[index], 0, -1))
    folder_clip = upr.source(str(folder), fps=30)
    assert (folder_clip.num_frames, folder_clip.fps) == (3, 30)
    assert all(np.array_equal(a, b) for a, b in zip(clip_frames(folder_clip, [2, 0, 1]), expected))


def test_random_order_and_one_call_per_pair(needs_vs, interpolator):
    """x3 on 5 frames, frames asked for in a shuffled order: each equals Interpolator on that pair, and each pair
    is interpolated once, with both of its times."""
    source = upr.source(CLIP)[:5]
    counting = CountingInterpolator(interpolator)
    clip = upr.interpolate(source, factor_num=3, interpolator=counting)
    assert (clip.num_frames, clip.fps, clip.format.id) == (15, 75, vs.RGB24)
    order = list(range(15))
    random.Random(1).shuffle(order)
    got = clip_frames(clip, order)
    inputs = [np.moveaxis(frame, 0, -1) for frame in clip_frames(source)]
    for n, frame in enumerate(got):
        k, t = divmod(n, 3)
        if t == 0 or k == 4:
            assert np.array_equal(frame, planar(inputs[min(k, 4)])), f"frame {n}"
        else:
            expected = interpolator.interpolate(inputs[k], inputs[k + 1], t / 3)
            assert max_difference(frame, planar(expected)) <= 1, f"frame {n}"
    assert sorted(map(tuple, counting.calls)) == [(pytest.approx(1 / 3), pytest.approx(2 / 3))] * 4


def test_lower_rate(needs_vs, interpolator):
    """25 -> 10 fps: output n sits at s = 2.5 n: source frames 0 and 5, and the pairs (2, 3), (7, 8) at t = 0.5."""
    source = upr.source(CLIP)
    counting = CountingInterpolator(interpolator)
    clip = upr.interpolate(source, fps_num=10, interpolator=counting)
    assert (clip.num_frames, clip.fps) == (4, 10)
    frames = clip_frames(clip)
    inputs = [np.moveaxis(frame, 0, -1) for frame in clip_frames(source)]
    assert np.array_equal(frames[0], planar(inputs[0])) and np.array_equal(frames[2], planar(inputs[5]))
    for n, k in ((1, 2), (3, 7)):
        assert max_difference(frames[n], planar(interpolator.interpolate(inputs[k], inputs[k + 1], 0.5))) <= 1
    assert counting.calls == [[0.5], [0.5]]


def test_scene_change_property_holds_the_pair(needs_vs, interpolator):
    source = upr.source(CLIP)[:4]
    marked = source[:1] + source[1].std.SetFrameProps(_SceneChangeNext=1) + source[2:]
    counting = CountingInterpolator(interpolator)
    clip = upr.interpolate(marked, factor_num=2, interpolator=counting, dup_threshold=0)
    frames = clip_frames(clip)
    inputs = clip_frames(source)
    assert np.array_equal(frames[3], inputs[1])          # s = 1.5 across the marked change: frame 1 held
    assert max_difference(frames[1], inputs[0]) > 10     # s = 0.5: interpolated
    assert len(counting.calls) == 2                      # pairs (0, 1) and (2, 3)


def test_sc_detector_holds_the_cut(needs_vs, interpolator):
    source = upr.source(CLIP)[4:8]                        # the cut lies between local frames 1 and 2
    counting = CountingInterpolator(interpolator)
    frames = clip_frames(upr.interpolate(source, sc=True, interpolator=counting))
    assert np.array_equal(frames[3], clip_frames(source[1])[0])
    assert len(counting.calls) == 2
    counting.calls.clear()
    clip_frames(upr.interpolate(source, sc=False, interpolator=counting))
    assert len(counting.calls) == 3


@pytest.mark.parametrize("fmt_name, tolerance", [("RGBS", 1e-5), ("RGBH", 2e-3), ("RGB30", 1), ("RGB48", 1)])
def test_other_formats(needs_vs, interpolator, fmt_name, tolerance):
    """Float formats pass their values, integer formats of any depth scale by 2^bits - 1, both ways."""
    fmt = getattr(vs, fmt_name)
    source = vs.core.resize.Point(upr.source(CLIP)[:2], format=fmt)
    clip = upr.interpolate(source, interpolator=interpolator)
    assert clip.format.id == fmt and clip.num_frames == 4
    frames = clip_frames(clip)
    inputs = clip_frames(source)
    scale = float((1 << source.format.bits_per_sample) - 1) if source.format.sample_type == vs.INTEGER else 1.0
    floats = [np.moveaxis(frame, 0, -1).astype(np.float32) / np.float32(scale) for frame in inputs]
    expected = planar(interpolator.interpolate(floats[0], floats[1], 0.5))
    if scale != 1.0:
        expected = np.floor(np.clip(expected, 0, 1) * scale + 0.5)
    assert frames[1].dtype == inputs[0].dtype
    assert np.abs(frames[1].astype(np.float64) - expected).max() <= tolerance
    assert np.array_equal(frames[0], inputs[0]) and np.array_equal(frames[2], inputs[1])


def test_bad_clips_are_one_line_errors(needs_vs):
    core = vs.core
    yuv = core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=4)
    with pytest.raises(vs.Error, match=r'core\.resize\.Bicubic\(clip, format=vs\.RGBS, matrix_in_s="709"\)'):
        upr.interpolate(yuv)
    a = core.std.BlankClip(format=vs.RGB24, width=64, height=48, length=2)
    b = core.std.BlankClip(format=vs.RGB24, width=32, height=48, length=2)
    with pytest.raises(vs.Error, match="variable format or size"):
        upr.interpolate(core.std.Splice([a, b], mismatch=True))
    with pytest.raises(vs.Error, match="variable frame rate"):
        upr.interpolate(core.std.Splice([a, core.std.AssumeFPS(a, fpsnum=30, fpsden=1)], mismatch=True))
    with pytest.raises(vs.Error, match="sc_threshold"):
        upr.interpolate(a, sc=True, sc_threshold=2)
    with pytest.raises(vs.Error, match="precision"):
        upr.interpolate(a, precision="fp8", device="cpu")
    for arguments, message in ((dict(scale=0.3), "scale must be 1, 0.5, 0.25 or 0.125"),
                               (dict(model_size="huge"), "unknown model size 'huge'"),
                               (dict(model_file="/nonexistent/upr.pkl"), "checkpoint not found"),
                               (dict(factor_num=0), "output rate must be positive")):
        with pytest.raises(vs.Error, match=message):
            upr.interpolate(a, device="cpu", **arguments)
    if not torch.cuda.is_available():
        with pytest.raises(vs.Error, match="CUDA is not available"):
            upr.interpolate(a, device=0)            # an index means that CUDA device
    infinite = core.std.BlankClip(format=vs.RGBS, width=64, height=48, length=3).std.Expr("1 x /")   # 1 / 0
    with pytest.raises(vs.Error, match="output frame 1: source frame 0 contains NaN or infinite values"):
        upr.interpolate(infinite, device="cpu").get_frame(1)
    with pytest.raises(vs.Error, match="upr.source: .*not found"):
        upr.source("/nonexistent/clip.mp4")
