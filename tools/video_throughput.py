"""Video engine throughput: the bare Interpolator against the whole engine (decode, model, encode) on the same pairs.

    python -m tools.video_throughput --threads 2 --out_json throughput.json       # 8 pairs of a clip at 1280x720
    python -m tools.video_throughput --input clip.mp4 --pairs 16 --size native --multi 4 --repeat 3

The first --pairs + 1 frames of --input (default: pampi_tour.mp4 of ../shared/videos), scaled to --size, are
encoded once to a temporary H.264 clip (CRF 10) and decoded back. Then, after one untimed warm-up pair, (a) the
bare core.Interpolator interpolates every pair of those frames, already in memory, and (b) the engine
(core.engine.job.convert_video) converts the clip to an .mp4 end to end: decode, model, encode and join, scene-cut
and duplicate detection off so that it interpolates every pair like (a). Both count --multi output frames per
pair: output frames per second = pairs x multi / seconds, and the ratio (b) / (a) is the share of the model's
speed the engine keeps (the issue's goal: at least 0.95). With --repeat R the runs alternate a, b, a, b, ... and
the medians count. Also recorded: the CPU time of the process (all its threads), the share of the engine's wall
time spent inside the model (the rest is start-up, waiting for frames or the encoder, joining; one run measures
it on its own, so it is less exposed to load that changes between runs), and the stage costs alone (decoding the
clip, encoding the engine's output again). Details: docs/performance.md (Video engine throughput).
"""
import json
import os
import shutil
import statistics
import tempfile
import time

import cv2
import torch
from tqdm import tqdm

from core.cli import UsageError, add_model_arguments, cli_main, interpolator_from_args, model_file_from_args, \
    tool_parser
from core.engine.job import VideoJobOptions, convert_video
from core.video import open_reader, open_writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CLIP = os.path.join(os.path.dirname(ROOT), "shared", "videos", "pampi_tour.mp4")
CLIP_CRF = 10             # the test clip: near-lossless, so scaling artefacts are not re-quantised much


def parse_size(text):
    """'1280x720' -> (1280, 720); 'native' -> None."""
    if text == "native":
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must be WIDTHxHEIGHT or native, got {text!r}") from None
    if width < 2 or height < 2:
        raise UsageError(f"--size must be at least 2x2, got {text}")
    return width, height


def build_parser():
    parser = tool_parser("python -m tools.video_throughput", __doc__, "docs/performance.md",
                         usage="%(prog)s [--input CLIP] [--pairs N] [--size WxH] [--repeat R] [options]")
    parser.add_argument("--input", default=DEFAULT_CLIP, metavar="CLIP",
                        help="a video file (default: pampi_tour.mp4 of ../shared/videos)")
    parser.add_argument("--pairs", type=int, default=8, metavar="N",
                        help="pairs timed: the first N + 1 frames (default 8)")
    parser.add_argument("--size", default="1280x720", metavar="WxH",
                        help="scale the frames to this size (default 1280x720; native: keep)")
    parser.add_argument("--multi", type=int, default=2, metavar="M", help="output frames per input frame (default 2)")
    parser.add_argument("--batch", type=int, default=None, metavar="B",
                        help="the engine's pairs per forward (default: the engine's)")
    parser.add_argument("--repeat", type=int, default=1, metavar="R", help="alternate runs of each (default 1)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the test clip and the engine's output in this folder")
    parser.add_argument("--out_json", default=None, metavar="FILE", help="write the results as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(parser)
    return parser


def make_clip(source, path, count, size):
    """Encode the first ``count`` frames of ``source``, scaled to ``size`` ((w, h) or None), to ``path``
    (H.264 at CRF :data:`CLIP_CRF`); returns the frame rate. A UsageError when ``source`` has fewer frames."""
    frames = []
    with open_reader(source) as reader:
        fps = reader.fps
        for frame in reader:
            frames.append(frame if size is None else
                          cv2.resize(frame, size, interpolation=cv2.INTER_AREA if size[0] < frame.shape[1]
                                     else cv2.INTER_CUBIC))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise UsageError(f"{source} has {len(frames)} frames; --pairs {count - 1} needs {count}")
    height, width = frames[0].shape[:2]
    with open_writer(path, fps, width, height, crf=CLIP_CRF) as writer:
        for frame in frames:
            writer.write(frame)
    return fps


def decode_all(path):
    """Every frame of ``path`` (RGB uint8) and the seconds it took."""
    started = time.perf_counter()
    with open_reader(path) as reader:
        frames = list(reader)
    return frames, time.perf_counter() - started


def time_bare(interpolator, frames, times, quiet):
    """(wall seconds, CPU seconds of this process) for ``interpolator.interpolate`` over every consecutive pair
    of ``frames`` at ``times``."""
    started, cpu = time.perf_counter(), time.process_time()
    for frame0, frame1 in tqdm(list(zip(frames, frames[1:])), desc="bare Interpolator", unit="pair",
                               disable=quiet, leave=False):
        interpolator.interpolate(frame0, frame1, times)
    return time.perf_counter() - started, time.process_time() - cpu


class _TimedModel:
    """An interpolator for the engine that adds up the wall time spent in ``interpolate_tensors`` (the model)."""

    def __init__(self, inner):
        self._inner = inner
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def interpolate_tensors(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._inner.interpolate_tensors(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def time_engine(interpolator, clip, output, multi, batch, quiet):
    """(wall seconds, CPU seconds of this process, the JobSummary, wall seconds inside the model) for the engine
    converting ``clip`` to ``output`` (an .mp4)."""
    options = VideoJobOptions(multi=multi, scene_threshold=0, dup_threshold=0, audio=False, batch=batch,
                              overwrite=True)
    bar = tqdm(desc="engine", unit="frame", disable=quiet, leave=False)

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    timed = _TimedModel(interpolator)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        summary = convert_video(clip, output, options, timed, progress=progress)
    finally:
        bar.close()
    return time.perf_counter() - started, time.process_time() - cpu, summary, timed.seconds


def time_encode(frames, path, fps):
    """Seconds to encode ``frames`` to ``path`` with the engine's default encoder settings, alone."""
    height, width = frames[0].shape[:2]
    started = time.perf_counter()
    with open_writer(path, fps, width, height) as writer:
        for frame in frames:
            writer.write(frame)
    return time.perf_counter() - started


def measure(args):
    """Run the measurement described in the module docstring; returns the result dict."""
    if args.pairs < 1:
        raise UsageError(f"--pairs must be at least 1, got {args.pairs}")
    if args.multi < 2:
        raise UsageError(f"--multi must be at least 2, got {args.multi}")
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}")
    size = parse_size(args.size)
    if not os.path.isfile(args.input):
        raise UsageError(f"--input not found: {args.input}")
    work = args.keep or tempfile.mkdtemp(prefix="video_throughput_")
    os.makedirs(work, exist_ok=True)
    try:
        clip = os.path.join(work, "clip.mp4")
        output = os.path.join(work, "engine_out.mp4")
        fps = make_clip(args.input, clip, args.pairs + 1, size)
        frames, decode_seconds = decode_all(clip)
        height, width = frames[0].shape[:2]
        interpolator = interpolator_from_args(args)
        times = [k / args.multi for k in range(1, args.multi)]
        interpolator.interpolate(frames[0], frames[1], times)                 # warm-up, untimed
        bare, engine, bare_cpu, engine_cpu, in_model, summary = [], [], [], [], [], None
        for _ in range(args.repeat):
            seconds, cpu = time_bare(interpolator, frames, times, args.quiet)
            bare.append(seconds)
            bare_cpu.append(cpu)
            seconds, cpu, summary, model = time_engine(interpolator, clip, output, args.multi, args.batch,
                                                       args.quiet)
            engine.append(seconds)
            engine_cpu.append(cpu)
            in_model.append(model)
        written, _ = decode_all(output)
        encode_seconds = time_encode(written, os.path.join(work, "encode_only.mp4"), fps * args.multi)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    counted = args.pairs * args.multi
    bare_s, engine_s = statistics.median(bare), statistics.median(engine)
    return {
        "input": os.path.abspath(args.input), "size": f"{width}x{height}", "pairs": args.pairs,
        "multi": args.multi, "repeat": args.repeat, "device": str(interpolator.device),
        "threads": torch.get_num_threads(), "precision": args.precision, "scale": args.scale,
        "model_size": args.model_size, "model_file": model_file_from_args(args),
        "pyramid": list(interpolator.pyramid_for(height, width)),
        "frames_counted": counted,
        "bare_seconds": [round(s, 3) for s in bare], "engine_seconds": [round(s, 3) for s in engine],
        "bare_fps": counted / bare_s, "engine_fps": counted / engine_s, "ratio": bare_s / engine_s,
        "bare_seconds_per_pair": bare_s / args.pairs, "engine_seconds_per_pair": engine_s / args.pairs,
        "bare_cpu_seconds": [round(s, 3) for s in bare_cpu], "engine_cpu_seconds": [round(s, 3) for s in engine_cpu],
        "cpu_ratio": statistics.median(bare_cpu) / statistics.median(engine_cpu),
        "engine_model_seconds": [round(s, 3) for s in in_model],
        "engine_model_share": statistics.median(m / e for m, e in zip(in_model, engine)),
        "engine_frames_out": summary.frames_out, "engine_frames_decoded": len(written),
        "decode_seconds": round(decode_seconds, 3), "encode_seconds": round(encode_seconds, 3),
    }


def format_result(r):
    return "\n".join([
        f"{r['pairs']} pairs of {os.path.basename(r['input'])} at {r['size']}, x{r['multi']}, device {r['device']}, "
        f"{r['threads']} threads, {r['precision']}, scale {r['scale']:g}, pyramid {r['pyramid'][0]}/"
        f"{r['pyramid'][1]}, median of {r['repeat']}",
        f"bare Interpolator: {r['bare_fps']:.3f} output frames/s ({r['bare_seconds_per_pair']:.2f} s a pair)",
        f"engine end to end: {r['engine_fps']:.3f} output frames/s ({r['engine_seconds_per_pair']:.2f} s a pair; "
        f"{r['engine_frames_out']} frames written)",
        f"ratio engine / bare: {r['ratio']:.3f} (CPU time of this process: {r['cpu_ratio']:.3f})",
        f"share of the engine's wall time spent in the model: {r['engine_model_share']:.3f}",
        f"alone: decoding the clip {r['decode_seconds']:.2f} s, encoding the engine's "
        f"{r['engine_frames_decoded']} frames {r['encode_seconds']:.2f} s",
    ])


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    result = measure(args)
    print(format_result(result))
    if args.out_json:
        folder = os.path.dirname(os.path.abspath(args.out_json))
        os.makedirs(folder, exist_ok=True)
        with open(args.out_json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"results written to {os.path.abspath(args.out_json)}")


if __name__ == "__main__":
    raise SystemExit(main())
