"""core.engine: timing and segment plan, the pipeline's threads, segments / resume / join, shards and faults.

Most jobs run with a blending stand-in for the model ((1 - t) * a + t * b, exact per pair), so the expected frames
are known independently of the engine; one test runs the real (random-weight) network through the tool.
"""
import errno
import fractions
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import av
import cv2
import numpy as np
import pytest
import torch

from core.engine import (DecodeFailure, JobError, VideoJobOptions, convert_video, output_count, pair_outputs,
                         pair_times, parts_folder, source_of)
from core.engine import job as job_module
from core.engine import segments as segments_module
from core.engine.pipeline import run_pipeline
from core.engine.plan import FrameRateConverter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------- helpers

class Blend:
    """A stand-in for core.Interpolator: (1 - t) * frame0 + t * frame1; records the batch sizes it got. With
    ``per_pair`` it also takes N lists of K times (pair n at times[n][k]), else such a call is refused."""
    device = torch.device("cpu")

    def __init__(self, delay=0.0, per_pair=False):
        self.batches = []
        self.delay = delay
        self.per_pair = per_pair

    def interpolate_tensors(self, img0, img1, times):
        if times and isinstance(times[0], list):
            if not self.per_pair:
                raise ValueError("time_period must lie in [0, 1]")
            times = [torch.tensor([pair[k] for pair in times])[:, None, None, None] for k in range(len(times[0]))]
        self.batches.append(img0.shape[0])
        if self.delay:
            time.sleep(self.delay)
        return [(1 - t) * img0 + t * img1 for t in times], None


def frames_of(n, width=32, height=24, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.float32), (0, 0), 3)
    base = (base - base.mean()) * 4 + 128    # smooth texture: lossy coding changes little
    out = []
    for i in range(n):   # a drifting pattern: neighbours differ, no scene cut, no duplicate
        out.append(np.clip(np.roll(base, 2 * i, axis=1) * 0.6 + 40 + 3 * i, 0, 255).astype(np.uint8))
    return out


def write_folder(folder, frames):
    os.makedirs(folder, exist_ok=True)
    for i, rgb in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"f{i:03d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    return str(folder)


def read_pngs(folder):
    names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    return names, [cv2.imread(os.path.join(folder, n), cv2.IMREAD_UNCHANGED) for n in names]


def make_clip(path, frames, fps=25, audio=True, sample_rate=8000):
    container = av.open(str(path), "w")
    height, width = frames[0].shape[:2]
    video = container.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    stream = None
    if audio:
        stream = container.add_stream("aac", rate=sample_rate)
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
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format=fmt, layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    container.close()
    return str(path)


def decode(path):
    """(RGB frames, video pts in seconds, audio packet count) of a video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(float(frame.pts * frame.time_base))
    audio = 0
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = sum(1 for p in container.demux(container.streams.audio[0]) if p.size)
    return frames, pts, audio


def expected_blend(frames, ratio):
    """The output the timing rules give with a blending model, computed from source_of (an independent path)."""
    n = len(frames)
    out = []
    for j in range(output_count(n, ratio)):
        i, t = source_of(j, ratio, n)
        if t == 0:
            out.append(frames[i])
        else:
            a, b = (torch.from_numpy(f.astype(np.float32) / 255.0) for f in (frames[i], frames[i + 1]))
            mixed = ((1 - float(t)) * a + float(t) * b).numpy()
            out.append((np.clip(mixed, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out


def options(**kw):
    kw.setdefault("scene_threshold", 0)
    kw.setdefault("dup_threshold", 0)
    return VideoJobOptions(**kw)


# ---------------------------------------------------------------------------------------------- timing

def test_timing_by_hand():
    assert output_count(10, 2) == 20 and output_count(6, fractions.Fraction(60, 25)) == 14   # 14.4 -> 14
    assert output_count(5, fractions.Fraction(12, 5)) == 12   # 12.0
    assert output_count(0, 2) == 0
    assert pair_times(3, 2) == [0, fractions.Fraction(1, 2)]
    # 25 -> 60: output 5 sits at 5 * 25 / 60 = 2 + 1/12
    assert source_of(5, fractions.Fraction(60, 25)) == (2, fractions.Fraction(1, 12))
    assert list(pair_outputs(2, fractions.Fraction(60, 25))) == [5, 6, 7]   # 4.8 -> 5 .. 7.2 -> 7
    assert source_of(13, fractions.Fraction(60, 25), frames_in=6) == (5, 0)   # the held tail
    # 30000/1001 -> 60000/1001 is exactly 2x
    ntsc_x2 = fractions.Fraction(60000, 1001) / fractions.Fraction(30000, 1001)
    assert pair_times(7, ntsc_x2) == [0, fractions.Fraction(1, 2)]


@pytest.mark.parametrize("ratio", [2, 3, fractions.Fraction(60, 25), fractions.Fraction(24000, 30000),
                                   fractions.Fraction(60000, 1001) / 24])
def test_pairs_tile_the_output(ratio):
    """Every output frame belongs to exactly one pair or to the held tail, in order."""
    for n in (1, 2, 7, 31):
        js = [j for i in range(n - 1) for j in pair_outputs(i, ratio)]
        assert js == list(range(len(js)))   # in order, no gap, no repeat
        assert len(js) == math.ceil((n - 1) * ratio)   # every j with j / ratio < n - 1
        for j in js:
            i, t = source_of(j, ratio)
            assert j in pair_outputs(i, ratio) and 0 <= t < 1 and i + t == fractions.Fraction(j) / ratio
        for j in range(len(js), output_count(n, ratio)):   # the held tail: the last frame
            assert source_of(j, ratio, n) == (n - 1, 0)


def test_frame_rate_converter_matches_the_timing():
    frames = [np.full((4, 4, 3), 10 * i, np.uint8) for i in range(6)]
    ratio = fractions.Fraction(60, 25)
    converter = FrameRateConverter(lambda a, b, ts: [((1 - t) * a + t * b).astype(np.uint8) for t in ts], ratio,
                                   scene_threshold=0)
    out = [f for frame in frames for f in converter.push(frame)] + converter.finish()
    assert len(out) == 14
    for j, frame in enumerate(out):
        i, t = source_of(j, ratio, 6)
        assert frame[0, 0, 0] == int((1 - t) * 10 * i + t * 10 * (i + 1)) if t else frame[0, 0, 0] == 10 * i


# ---------------------------------------------------------------------------------------------- pipeline

def test_pipeline_keeps_order_and_bounds_memory():
    produced, consumed, ahead = [0], [], []

    def produce():
        for i in range(200):
            produced[0] += 1
            ahead.append(produced[0] - len(consumed))
            yield i

    class Double:
        def feed(self, item):
            return [2 * item]

        def flush(self):
            return [-1]

    run_pipeline(produce, Double(), consumed.append, depth=3)
    assert consumed == [2 * i for i in range(200)] + [-1]
    assert max(ahead) <= 3 + 3 + 3   # two queues of 3, one item in each stage


@pytest.mark.parametrize("where", ["produce", "feed", "consume"])
def test_pipeline_errors_reach_the_caller_with_their_message(where):
    def produce():
        for i in range(50):
            if where == "produce" and i == 7:
                raise ValueError("decoder broke at 7")
            yield i

    class Stage:
        def feed(self, item):
            if where == "feed" and item == 9:
                raise ValueError("model broke at 9")
            return [item]

        def flush(self):
            return []

    def consume(item):
        if where == "consume" and item == 11:
            raise OSError(errno.ENOSPC, "No space left on device")

    before = threading.active_count()
    with pytest.raises((ValueError, OSError)) as info:
        run_pipeline(produce, Stage(), consume, depth=2)
    assert {"produce": "decoder broke at 7", "feed": "model broke at 9",
            "consume": "No space left on device"}[where] in str(info.value)
    time.sleep(0.3)
    assert threading.active_count() == before   # no thread left behind


# ---------------------------------------------------------------------------------------------- jobs

def test_png_job_matches_the_timing_for_any_segment_length_and_batch(tmp_path):
    frames = frames_of(11)
    source = write_folder(tmp_path / "in", frames)
    ratio = fractions.Fraction(60, 25)
    expected = expected_blend(frames, ratio)
    for name, length, batch, per_pair in (("one", 1000, 1, False), ("seg3", 3, 1, False), ("seg1", 1, 4, True),
                                          ("seg4b3", 4, 3, False), ("seg5b4", 5, 4, True)):
        model = Blend(per_pair=per_pair)
        summary = convert_video(source, str(tmp_path / name) + "/", options(fps=60, segment_frames=length,
                                                                             batch=batch), model)
        names, out = read_pngs(tmp_path / name)
        assert names == [f"frame_{j:06d}.png" for j in range(len(expected))]
        assert summary.frames_out == len(expected) == 26 and summary.frames_in == 11
        for j, (got, want) in enumerate(zip(out, expected)):
            assert np.array_equal(got[..., ::-1], want), (name, j)
        assert not os.path.exists(parts_folder(str(tmp_path / name)))
        if name == "seg5b4":   # pairs with the same number of in-between times share a forward, own times each
            assert max(model.batches) > 1 and sum(model.batches) == 10
        else:   # at 60 fps the pairs' times differ: one pair per forward without per-pair times
            assert max(model.batches) == 1 and sum(model.batches) == 10


def test_multi_batches_pairs_and_gives_the_same_frames(tmp_path):
    frames = frames_of(9)
    source = write_folder(tmp_path / "in", frames)
    model1, model4 = Blend(), Blend()
    convert_video(source, str(tmp_path / "b1/"), options(multi=4, batch=1, segment_frames=5), model1)
    convert_video(source, str(tmp_path / "b4/"), options(multi=4, batch=4, segment_frames=5), model4)
    assert model1.batches == [1] * 8
    assert sorted(model4.batches) == [1, 3, 4]   # segment 0: pairs 0-4 (4 + 1), segment 1: pairs 5-7
    a, b = read_pngs(tmp_path / "b1")[1], read_pngs(tmp_path / "b4")[1]
    assert len(a) == 36 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x[..., ::-1], y) for x, y in zip(a, expected_blend(frames, 4)))


def test_holds_cuts_and_duplicates_inside_segments(tmp_path):
    frames = frames_of(8)
    frames[3] = frames[2].copy()                      # duplicate pair (2, 3)
    frames[5:] = [f // 4 for f in frames[5:]]         # cut between 4 and 5 (a much darker shot)
    source = write_folder(tmp_path / "in", frames)
    summary = convert_video(source, str(tmp_path / "o/"), options(multi=2, segment_frames=2, scene_threshold=0.1,
                                                                  dup_threshold=0.02), Blend())
    assert summary.cuts == [4] and summary.duplicates == [2]
    out = read_pngs(tmp_path / "o")[1]
    assert np.array_equal(out[5][..., ::-1], frames[2]) and np.array_equal(out[9][..., ::-1], frames[4])


def test_video_segments_join_to_the_one_segment_result(tmp_path):
    frames = frames_of(13, 48, 32)
    source = make_clip(tmp_path / "in.mp4", frames)
    convert_video(source, str(tmp_path / "whole.mp4"), options(multi=2, segment_frames=1000), Blend())
    convert_video(source, str(tmp_path / "parts.mp4"), options(multi=2, segment_frames=4), Blend())
    whole, parts = decode(tmp_path / "whole.mp4"), decode(tmp_path / "parts.mp4")
    assert len(whole[0]) == len(parts[0]) == 26
    assert parts[1] == [j / 50 for j in range(26)] == whole[1]
    assert parts[2] == whole[2] > 0    # audio copied
    for name in ("whole", "parts"):    # the last part (2 frames) is encoded without B-frames: no gap in decode times
        with av.open(str(tmp_path / f"{name}.mp4")) as container:
            assert container.streams.video[0].average_rate == 50, name
    expected = expected_blend(frames, 2)
    error = lambda a, b: np.abs(a.astype(int) - b.astype(int)).mean()   # noqa: E731
    for j, (a, b) in enumerate(zip(whole[0], parts[0])):   # separate encodes of the same frames: as close
        assert error(b, expected[j]) <= error(a, expected[j]) + 1.5
        assert error(b, expected[j]) < min(error(b, expected[k]) for k in (j - 2, j + 2) if 0 <= k < 26)


def test_parts_of_an_earlier_job_need_resume_and_the_same_input_and_options(tmp_path, monkeypatch):
    frames = frames_of(9)
    source = write_folder(tmp_path / "in", frames)
    out = str(tmp_path / "o/")
    calls = [0]
    real = segments_module.PngSegmentWriter.write

    def failing(self, frame):
        calls[0] += 1
        if calls[0] > 7:
            raise OSError(errno.ENOSPC, "No space left on device", self.folder)
        return real(self, frame)

    monkeypatch.setattr(segments_module.PngSegmentWriter, "write", failing)
    with pytest.raises(OSError, match="No space"):
        convert_video(source, out, options(multi=2, segment_frames=3), Blend())
    monkeypatch.setattr(segments_module.PngSegmentWriter, "write", real)
    parts = segments_module.Parts(out)
    assert sorted(parts.done()) == [0]     # 6 frames of segment 0 committed, segment 1 was in progress

    with pytest.raises(JobError, match="pass --resume to continue it, or --overwrite"):
        convert_video(source, out, options(multi=2, segment_frames=3), Blend())
    with pytest.raises(JobError, match="the options changed.*segment_frames: 3 -> 4"):
        convert_video(source, out, options(multi=2, segment_frames=4, resume=True), Blend())
    with pytest.raises(JobError, match="options changed.*output_fps: 50 -> 75"):
        convert_video(source, out, options(multi=3, segment_frames=3, resume=True), Blend())
    changed = frames_of(9, seed=1)
    cv2.imwrite(os.path.join(source, "f008.png"), changed[8])
    with pytest.raises(JobError, match="the input changed"):
        convert_video(source, out, options(multi=2, segment_frames=3, resume=True), Blend())
    cv2.imwrite(os.path.join(source, "f008.png"), np.ascontiguousarray(frames[8][..., ::-1]))
    os.utime(os.path.join(source, "f008.png"), ns=(0, 0))
    with pytest.raises(JobError, match="the input changed"):
        convert_video(source, out, options(multi=2, segment_frames=3, resume=True), Blend())


def test_disk_full_then_resume_redoes_at_most_one_segment(tmp_path, monkeypatch):
    frames = frames_of(10)
    source = write_folder(tmp_path / "in", frames)
    calls = [0]
    real = segments_module.PngSegmentWriter.write

    def failing(self, frame):
        calls[0] += 1
        if calls[0] == 10:
            raise OSError(errno.ENOSPC, "No space left on device", self.folder)
        return real(self, frame)

    monkeypatch.setattr(segments_module.PngSegmentWriter, "write", failing)
    with pytest.raises(OSError):
        convert_video(source, str(tmp_path / "o/"), options(multi=2, segment_frames=4), Blend())
    monkeypatch.setattr(segments_module.PngSegmentWriter, "write", real)
    cv2.imwrite(str(tmp_path / "o" / ".tmp999_frame_000009.png"), frames[0])   # as a kill mid-write leaves
    model = Blend()
    summary = convert_video(source, str(tmp_path / "o/"), options(multi=2, segment_frames=4, resume=True), model)
    assert summary.segments_run == 2 and summary.segments == 3     # segment 0 was kept
    assert len(model.batches) == 4 + 1    # pairs 4-7 and 8 only
    convert_video(source, str(tmp_path / "ref/"), options(multi=2, segment_frames=4), Blend())
    (names_a, a), (names_b, b) = read_pngs(tmp_path / "o"), read_pngs(tmp_path / "ref")
    assert names_a == names_b and all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == 20


class FakeShard:
    def __init__(self, rank, world_size):
        self.rank, self.world_size = rank, world_size

    def barrier(self):
        pass


@pytest.mark.parametrize("kind", ["png", "video"])
def test_two_ranks_join_to_the_one_process_result(tmp_path, kind):
    """Rank 1 then rank 0 in one process (barrier a no-op): the joined output equals one process's. Video at
    128x96: on tiny frames (48x32) libx264's MB-tree is not repeatable from one encoder to the next in a process
    (docs/video.md, Resume), so equal decoded frames are only promised from there up."""
    frames = frames_of(11, 128, 96)
    source = make_clip(tmp_path / "in.mp4", frames) if kind == "video" else write_folder(tmp_path / "in", frames)
    name = "o.mp4" if kind == "video" else "o/"
    single = str(tmp_path / "single" / name)
    os.makedirs(tmp_path / "single")
    convert_video(source, single, options(multi=2, segment_frames=3), Blend())
    shared = str(tmp_path / "ranks" / name)
    os.makedirs(tmp_path / "ranks")
    m1, m0 = Blend(), Blend()
    r1 = convert_video(source, shared, options(multi=2, segment_frames=3), m1, shard=FakeShard(1, 2))
    assert not r1.joined and r1.segments_run == 2 and len(m1.batches) == 3 + 1   # segments 1 (pairs 3-5) and 3 (pair 9)
    assert not os.path.exists(shared.rstrip("/")) or kind == "png"
    # rank 0 after rank 1 (a real barrier would order them the other way; --resume accepts rank 1's parts)
    r0 = convert_video(source, shared, options(multi=2, segment_frames=3, resume=True), m0, shard=FakeShard(0, 2))
    assert r0.joined and r0.segments_run == 2 and r0.segments == 4 and len(m0.batches) == 3 + 3
    if kind == "png":
        (na, a), (nb, b) = read_pngs(single), read_pngs(shared)
        assert na == nb and len(a) == 22 and all(np.array_equal(x, y) for x, y in zip(a, b))
    else:
        a, b = decode(single), decode(shared)
        assert len(a[0]) == len(b[0]) == 22 and a[1] == b[1] and a[2] == b[2]
        assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))


def test_decode_error_mid_input_finishes_the_frames_before_it(tmp_path, monkeypatch):
    frames = frames_of(12, 48, 32)
    source = make_clip(tmp_path / "in.mp4", frames, audio=False)
    real_open = job_module.open_reader

    def broken_open(path, fps=None):   # as core.video.VideoReader does on an FFmpegError after frame 7
        reader = real_open(path, fps)
        iterate = type(reader).__iter__

        def frames_until_error(self):
            for n, frame in enumerate(iterate(self)):
                if n == 7:
                    self.decode_error = f"decoding {path} stopped after 7 frames: Invalid data found"
                    return
                yield frame

        reader.__class__ = type("Broken", (type(reader),), {"__iter__": frames_until_error})
        return reader

    monkeypatch.setattr(job_module, "open_reader", broken_open)
    with pytest.raises(DecodeFailure, match="input frame 7 of the range failed") as info:
        convert_video(source, str(tmp_path / "o.mp4"), options(multi=2, segment_frames=3), Blend())
    assert info.value.frame == 7 and info.value.summary.frames_in == 7
    assert len(decode(tmp_path / "o.mp4")[0]) == 14


def test_killed_job_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a job once a segment is committed, resume it, compare with an uninterrupted run."""
    frames = frames_of(24, 128, 96)
    source = make_clip(tmp_path / "in.mp4", frames)
    folder = write_folder(tmp_path / "frames", frames)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import sys, time, torch
        from core.engine import VideoJobOptions, convert_video
        class Slow:
            device = torch.device("cpu")
            def interpolate_tensors(self, a, b, times):
                time.sleep(float(sys.argv[3]))
                return [(1 - t) * a + t * b for t in times], None
        options = VideoJobOptions(multi=2, segment_frames=5, scene_threshold=0, dup_threshold=0,
                                  resume="--resume" in sys.argv)
        convert_video(sys.argv[1], sys.argv[2], options, Slow())
    """))
    env = dict(os.environ, PYTHONPATH=REPO)
    for src, name, reference in ((source, "killed.mp4", "ref.mp4"), (folder, "killed/", "ref/")):
        out = str(tmp_path / name)
        job = subprocess.Popen([sys.executable, str(script), src, out, "0.15"], cwd=REPO, env=env)
        parts = parts_folder(out)
        deadline = time.time() + 120
        while time.time() < deadline and job.poll() is None:
            if os.path.isfile(os.path.join(parts, "seg_000001.json")):
                break
            time.sleep(0.05)
        assert job.poll() is None, "the job ended before it could be killed"
        job.send_signal(signal.SIGKILL)
        job.wait()
        assert not os.path.exists(out) or name.endswith("/")
        done = segments_module.Parts(out).done()
        assert 1 in done and 4 not in done
        again = subprocess.run([sys.executable, str(script), src, out, "0", "--resume"], cwd=REPO, env=env,
                               capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        subprocess.run([sys.executable, str(script), src, str(tmp_path / reference), "0"], cwd=REPO, env=env,
                       check=True)
        if name.endswith("/"):
            (na, a), (nb, b) = read_pngs(out), read_pngs(tmp_path / reference)
            assert na == nb and len(a) == 48
            assert all(open(os.path.join(out, n), "rb").read() == open(os.path.join(tmp_path / reference, n),
                                                                          "rb").read() for n in na)
        else:
            a, b = decode(out), decode(tmp_path / reference)
            assert len(a[0]) == len(b[0]) == 48 and a[1] == b[1] and a[2] == b[2] > 0
            assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
        assert not os.path.exists(parts)


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_corrupt_bytes_mid_file_fail_at_a_frame_and_keep_the_frames_before(tmp_path, ext):
    """Real damage: bytes overwritten in the middle of the file. mp4: the decoder raises at a frame; mkv: the
    demuxer stops early without an error, which the frame count of the header reveals. Either way the frames before
    are finished into a whole output and the job fails naming the frame."""
    frames = frames_of(40, 128, 96)
    source = make_clip(tmp_path / f"in{ext}", frames, audio=False)
    data = bytearray(open(source, "rb").read())
    for offset in range(len(data) // 2, len(data) // 2 + 2000, 7):
        data[offset] = (data[offset] * 13 + 77) % 256
    open(source, "wb").write(data)
    with pytest.raises(DecodeFailure, match=r"input frame \d+ of the range failed") as info:
        convert_video(source, str(tmp_path / "o.mp4"), options(multi=2, segment_frames=4), Blend())
    k = info.value.frame
    assert 0 < k < 40 and info.value.summary.frames_in == k
    assert len(decode(tmp_path / "o.mp4")[0]) == 2 * k
    assert not os.path.exists(parts_folder(str(tmp_path / "o.mp4")))


def test_tool_refuses_parts_without_resume_and_resumes_a_failed_job(tmp_path, capsys, monkeypatch):
    """tools.interp_video with the random-weight network: a job that stopped on a full disk leaves its parts; the
    same command is refused in one line (before the model loads), --resume finishes it, and the PNG frames equal
    an uninterrupted run's bit for bit."""
    import core
    from tools import interp_video

    torch.manual_seed(0)
    model_file = tmp_path / "random.pkl"
    core.save_weights(core.build_model("base"), model_file)
    source = write_folder(tmp_path / "in", frames_of(7, 64, 48))
    out = str(tmp_path / "out") + "/"
    args = ["--input", source, "--output", out, "--multi", "2", "--segment_frames", "2", "--model_file",
            str(model_file), "--device", "cpu", "--quiet"]
    real = segments_module.PngSegmentWriter.write
    calls = [0]

    def failing(self, frame):
        calls[0] += 1
        if calls[0] == 7:
            raise OSError(errno.ENOSPC, "No space left on device", self.folder)
        return real(self, frame)

    monkeypatch.setattr(segments_module.PngSegmentWriter, "write", failing)
    assert interp_video.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: No space left on device") and "Traceback" not in "".join(err)
    monkeypatch.setattr(segments_module.PngSegmentWriter, "write", real)
    assert interp_video.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {parts_folder(out)} holds the parts of an earlier job for {out}: pass --resume to "
                   "continue it, or --overwrite to start again"]
    assert interp_video.main(args + ["--resume", "--crf", "20"]) == 0   # --crf does not change PNG output
    text = capsys.readouterr().out
    assert "resume: 1 segment(s) done" in text and "output: " in text and "14 frames" in text
    assert interp_video.main(args[:3] + [str(tmp_path / "ref") + "/"] + args[4:]) == 0
    (na, a), (nb, b) = read_pngs(out), read_pngs(tmp_path / "ref")
    assert na == nb and len(a) == 14 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not os.path.exists(parts_folder(out))


@pytest.mark.parametrize("kind", ["png", "video"])
def test_killed_while_the_parts_are_removed_resumes_as_done(tmp_path, monkeypatch, kind):
    """A kill after the final rename but before the parts folder is gone: --resume sees the output complete."""
    frames = frames_of(7, 128, 96)
    source = make_clip(tmp_path / "in.mp4", frames) if kind == "video" else write_folder(tmp_path / "in", frames)
    out = str(tmp_path / ("o.mp4" if kind == "video" else "o/"))
    real = segments_module.Parts.remove

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(segments_module.Parts, "remove", killed)
    with pytest.raises(KeyboardInterrupt):
        convert_video(source, out, options(multi=2, segment_frames=3), Blend())
    monkeypatch.setattr(segments_module.Parts, "remove", real)
    before = decode(out) if kind == "video" else read_pngs(out)
    with pytest.raises(JobError, match="pass --resume"):
        convert_video(source, out, options(multi=2, segment_frames=3), Blend())
    model = Blend()
    summary = convert_video(source, out, options(multi=2, segment_frames=3, resume=True), model)
    assert summary.joined and summary.frames_out == 14 and summary.interpolated == 6 and model.batches == []
    assert not os.path.exists(parts_folder(out))
    after = decode(out) if kind == "video" else read_pngs(out)
    assert len(after[0]) == 14 and all(np.array_equal(x, y) for x, y in zip(before[1 if kind == "png" else 0],
                                                                              after[1 if kind == "png" else 0]))
