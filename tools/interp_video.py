"""Raise the frame rate of a video, a folder of frames or a folder of videos with UPR-Net.

    python -m tools.interp_video --input clip.mp4 --output clip_x2.mp4 --multi 2     # 25 -> 50 fps
    python -m tools.interp_video --input videos/ --output out/ --fps 60              # each video to 60 fps
    python -m tools.interp_video --input film.mkv --output film_x2.mkv --multi 2 --resume   # continue a killed job
    torchrun --nproc_per_node 4 -m tools.interp_video --input videos/ --output out/ --multi 2   # 4 GPUs

The work is done by core.engine (pipelined, in resumable segments, spread over torchrun's ranks). Timing, time
range, scene cuts, duplicates, montage, audio, inputs and outputs, output checks, the engine: docs/video.md.
"""
import argparse
import fractions
import os
import re
import sys
import tempfile

import av
from tqdm import tqdm

from core.cli import (UsageError, add_model_arguments, cli_main, error_message, interpolator_from_args, known_errors,
                      model_file_from_args, tool_parser)
from core.engine import (DEFAULT_SEGMENT_FRAMES, DecodeFailure, VideoJobOptions, convert_many, convert_video,
                         describe_summary, parts_folder)
from core.engine.job import describe_time as _describe_time
from core.video import (DEFAULT_CRF, DEFAULT_DUPLICATE_THRESHOLD, DEFAULT_SCENE_THRESHOLD, VIDEO_EXTENSIONS,
                        is_folder_output, is_video_file, list_frame_files)

EXIT_SOME_FAILED = 1


def parse_rate(text):
    """'50', '59.94' or '60000/1001' -> a positive Fraction."""
    try:
        rate = fractions.Fraction(text).limit_denominator(1001000)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a frame rate: {text!r}") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"a frame rate must be positive, got {text}")
    return rate


_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


def parse_time(text):
    """'90', '1.5', '1:30', '01:02:03.250' -> seconds as a non-negative Fraction."""
    value = text.strip()
    match = _CLOCK.match(value)
    try:
        if match:
            hours, minutes, seconds = match.groups()
            if int(minutes) >= 60 and hours is not None or fractions.Fraction(seconds) >= 60:
                raise ValueError
            result = (int(hours or 0) * 3600 + int(minutes) * 60) + fractions.Fraction(seconds)
        else:
            if not re.match(r"^\d+(\.\d*)?$|^\.\d+$", value):
                raise ValueError
            result = fractions.Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (seconds such as 12.5, or [HH:]MM:SS[.fff])") \
            from None
    return result


def parse_args(argv=None):
    parser = tool_parser("python -m tools.interp_video", __doc__, "docs/video.md",
                         usage="%(prog)s --input IN --output OUT (--multi M | --fps F) [options]")
    parser.add_argument("--input", required=True, metavar="IN",
                        help="a video file, a folder of frames (*.png, *.jpg, ...) or of video files")
    parser.add_argument("--output", required=True, metavar="OUT",
                        help="a video file (.mp4 .mkv .webm ...) or a folder (PNG frames, or one video each)")
    rate = parser.add_mutually_exclusive_group(required=True)
    rate.add_argument("--multi", type=int, metavar="M",
                      help="M x the frame rate: M-1 frames between each pair (2, 4, 8, ...)")
    rate.add_argument("--fps", type=parse_rate, metavar="F",
                      help="output frame rate, e.g. 60 or 60000/1001 (frames at any time)")
    parser.add_argument("--input_fps", type=parse_rate, default=None, metavar="R",
                        help="rate of a frame-folder input (default 25), or to override a video's")
    parser.add_argument("--start", type=parse_time, default=None, metavar="T",
                        help="from this time on (seconds or [HH:]MM:SS[.fff]; frames with i / r >= T)")
    parser.add_argument("--end", type=parse_time, default=None, metavar="T",
                        help="up to this time (frames with i / r < T)")
    parser.add_argument("--scene_threshold", type=float, default=DEFAULT_SCENE_THRESHOLD, metavar="S",
                        help=f"scene cut above S, in [0, 1]: repeat, don't morph (default {DEFAULT_SCENE_THRESHOLD}; "
                             "0: off)")
    parser.add_argument("--dup_threshold", type=float, default=DEFAULT_DUPLICATE_THRESHOLD, metavar="D",
                        help=f"duplicate pair below D, in [0, 1]: repeat (default {DEFAULT_DUPLICATE_THRESHOLD}; "
                             "0: off)")
    parser.add_argument("--montage", action="store_true", help="input (left) and result (right) side by side")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output video file")
    parser.add_argument("--output_ext", default=None, metavar="EXT",
                        help="for a folder of videos: the outputs' extension (default: the input's, or .mp4)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF,
                        help=f"video quality, lower is better (libx264 CRF, default {DEFAULT_CRF})")
    parser.add_argument("--codec", default=None,
                        help="video encoder (default: libx264, else mpeg4; libvpx-vp9 for .webm)")
    parser.add_argument("--no_audio", action="store_true", help="do not copy the audio")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed job (same command): its committed segments are kept")
    parser.add_argument("--batch", type=int, default=None, metavar="B",
                        help="pairs per forward (default 1 on the CPU, 4 on CUDA)")
    parser.add_argument("--segment_frames", type=int, default=DEFAULT_SEGMENT_FRAMES, metavar="S",
                        help=f"input frames per resumable segment (default {DEFAULT_SEGMENT_FRAMES})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def _list_videos(folder):
    """The video files of ``folder`` (:func:`core.video.is_video_file`), sorted by name."""
    names = sorted(os.listdir(folder), key=lambda n: [int(p) if p.isdigit() else p.lower()
                                                      for p in re.split(r"(\d+)", n)])
    return [os.path.join(folder, n) for n in names if is_video_file(os.path.join(folder, n))]


def _same_path(a, b):
    a, b = os.path.realpath(a.rstrip("/\\") or a), os.path.realpath(b.rstrip("/\\") or b)
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable_folder(folder):
    """``folder`` must exist, be a folder and accept a new file (a real test: root ignores permission bits, and
    a read-only file system shows up only when writing)."""
    shown = folder or "."
    if not os.path.exists(shown):
        raise UsageError(f"output folder {shown} does not exist; create it first")
    if not os.path.isdir(shown):
        raise UsageError(f"output folder {shown} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=shown, prefix=".interp_video_write_test_"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to output folder {shown}: {error.strerror or error}") from None


def check_output(output, inputs, overwrite=False, folder=None):
    """Fail at once (UsageError) where ``output`` cannot be written: see docs/video.md, Output checks. ``folder``:
    whether the output is a folder (default :func:`is_folder_output`); ``inputs``: paths it must differ from."""
    if any(_same_path(source, output) for source in inputs):
        raise UsageError("--input and --output are the same path")
    folder = is_folder_output(output) if folder is None else folder
    parent = os.path.dirname(os.path.abspath(output.rstrip("/\\") or output))
    if folder:
        if os.path.exists(output) and not os.path.isdir(output):
            raise UsageError(f"output {output} exists and is not a folder")
        _check_writable_folder(output if os.path.isdir(output) else parent)  # a new folder goes into parent
        return
    if os.path.isdir(output):
        raise UsageError(f"output {output} is a folder")
    if os.path.exists(output) and not overwrite:
        raise UsageError(f"output {output} exists; pass --overwrite to replace it")
    _check_writable_folder(parent)


def _batch_jobs(args, videos):
    """(input, output) per video of a folder of videos, all checked (see :func:`check_output`)."""
    if not is_folder_output(args.output) or os.path.isfile(args.output):
        raise UsageError(f"--input {args.input} is a folder of videos: --output must be a folder, "
                         f"got {args.output}")
    ext = args.output_ext
    jobs, targets = [], {}
    for source in videos:
        stem, source_ext = os.path.splitext(os.path.basename(source))
        out_ext = ext or (source_ext if source_ext.lower() in VIDEO_EXTENSIONS else ".mp4")
        target = os.path.join(args.output, stem + out_ext)
        if os.path.normcase(target) in targets:
            raise UsageError(f"{os.path.basename(targets[os.path.normcase(target)])} and "
                             f"{os.path.basename(source)} would both be written to {target}; use --output_ext")
        targets[os.path.normcase(target)] = source
        jobs.append((source, target))
    check_output(args.output, [args.input], folder=True)
    existing = [target for _, target in jobs if os.path.exists(target)]
    if existing and args.resume and not args.overwrite:   # finished by the earlier run: kept
        finished = {t for t in existing if not os.path.isdir(parts_folder(t))}
        if finished:
            print(f"resume: {len(finished)} output file(s) finished earlier are kept")
        jobs = [(s, t) for s, t in jobs if t not in finished]
        existing = []   # the others have parts: their jobs continue (or were killed after their join)
    if existing and not args.overwrite:
        raise UsageError(f"{len(existing)} output file(s) exist already ({', '.join(existing[:3])}"
                         f"{' ...' if len(existing) > 3 else ''}); pass --overwrite to replace them")
    for source, target in jobs:
        if _same_path(source, target):
            raise UsageError(f"output {target} is its input; use another --output or --output_ext")
        if os.path.isdir(target):
            raise UsageError(f"output {target} is a folder")
    return jobs


def job_options(args):
    """The :class:`core.engine.VideoJobOptions` of parsed ``args`` (the model named for the manifest)."""
    model = {"file": model_file_from_args(args), "size": args.model_size, "precision": args.precision,
             "pyr_level": args.pyr_level, "nr_lvl_skipped": args.nr_lvl_skipped,
             "still_threshold": args.still_threshold}
    for name in ("scale", "compile"):
        if getattr(args, name, None) not in (None, False):
            model[name] = getattr(args, name)
    return VideoJobOptions(multi=args.multi, fps=args.fps, input_fps=args.input_fps, start=args.start,
                           end=args.end, scene_threshold=args.scene_threshold, dup_threshold=args.dup_threshold,
                           montage=args.montage, crf=args.crf, codec=args.codec, audio=not args.no_audio,
                           batch=args.batch, segment_frames=args.segment_frames, resume=args.resume,
                           overwrite=args.overwrite, model=model)


class _Progress:
    """A tqdm bar fed by the engine's progress(done, total) callback (from its encoder thread)."""

    def __init__(self, label, quiet):
        self.bar = tqdm(total=None, unit="frame", desc=label, file=sys.stderr, disable=quiet, dynamic_ncols=True)

    def __call__(self, done, total):
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()


def _report(summary, montage):
    for line in describe_summary(summary, montage):
        print(line)


def interpolate_one(args, source, output, interpolator, label="interpolating", shard=None):
    """Convert one input (a video or a frame folder) to ``output`` with :func:`core.engine.convert_video`;
    prints what it does; returns the summary. Errors propagate (the committed segments stay for --resume)."""
    progress = _Progress(label, args.quiet or (shard is not None and shard.rank != 0))
    log = print if shard is None or shard.rank == 0 else None
    try:
        summary = convert_video(source, output, job_options(args), interpolator, progress, shard, log)
    except DecodeFailure as failure:
        progress.close()
        _report(failure.summary, args.montage)
        raise
    finally:
        progress.close()
    if summary.joined:
        _report(summary, args.montage)
    return summary


def _check_arguments(args):
    if args.multi is not None and args.multi < 2:
        raise UsageError(f"--multi must be at least 2, got {args.multi}")
    if not 0 <= args.scene_threshold <= 1:
        raise UsageError(f"--scene_threshold must lie in [0, 1] (0 disables), got {args.scene_threshold:g}")
    if not 0 <= args.dup_threshold <= 1:
        raise UsageError(f"--dup_threshold must lie in [0, 1] (0 disables), got {args.dup_threshold:g}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end ({_describe_time(args.end)}) must come after --start ({_describe_time(args.start)})")
    if args.codec is not None and args.codec not in av.codecs_available:
        raise UsageError(f"--codec {args.codec}: no such encoder in PyAV's FFmpeg")
    if args.output_ext is not None:
        ext = args.output_ext.lower()
        ext = ext if ext.startswith(".") else "." + ext
        if ext not in VIDEO_EXTENSIONS:
            raise UsageError(f"--output_ext must be one of {' '.join(VIDEO_EXTENSIONS)}, got {args.output_ext}")
        args.output_ext = ext
    if not os.path.exists(args.input):
        raise UsageError(f"input not found: {args.input}")


def _check_parts(args, output):
    """Parts of an earlier job for ``output``: refused without --resume or --overwrite (before the model loads)."""
    if os.path.isdir(parts_folder(output)) and not (args.resume or args.overwrite):
        raise UsageError(f"{parts_folder(output)} holds the parts of an earlier job for {output}: pass --resume "
                         "to continue it, or --overwrite to start again")


def _shard(args):
    """The torchrun shard (core.engine.distributed.Shard) when WORLD_SIZE > 1, else None (one process)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    from core.engine.distributed import Shard
    shard = Shard.from_environment(args.device)
    args.device = str(shard.device)
    return shard


@cli_main
def main(argv=None):
    args = parse_args(argv)
    _check_arguments(args)
    videos = []
    if os.path.isdir(args.input) and not list_frame_files(args.input):
        videos = _list_videos(args.input)
    if not videos:  # one video or one frame folder
        if args.output_ext is not None:
            raise UsageError("--output_ext applies to a folder of videos as input")
        resuming = args.resume and os.path.isdir(parts_folder(args.output))   # perhaps killed after its join
        check_output(args.output, [args.input], args.overwrite or resuming)
        _check_parts(args, args.output)
        to_folder = is_folder_output(args.output)
        if to_folder and os.path.isdir(args.output) and list_frame_files(args.output) and \
                not os.path.isdir(parts_folder(args.output)):
            raise UsageError(f"output folder {args.output} already holds PNG files; choose an empty or new folder")
        shard = _shard(args)
        interpolate_one(args, args.input, args.output, lambda: interpolator_from_args(args), shard=shard)
        return 0

    jobs = _batch_jobs(args, videos)
    for _, target in jobs:
        _check_parts(args, target)
    shard = _shard(args)
    main_rank = shard is None or shard.rank == 0
    if main_rank:
        print(f"{len(jobs)} video(s) in {args.input} -> {args.output}")
    interpolator = interpolator_from_args(args)  # once for all files; a bad checkpoint stops everything
    os.makedirs(args.output, exist_ok=True)
    failed = []
    bars = []

    def progress_for(number, source):
        quiet = args.quiet or (shard is not None and shard.world_size > len(jobs) and shard.rank != 0)
        bars.append(_Progress(f"[{number + 1}/{len(jobs)}] {os.path.basename(source)}", quiet))
        return bars[-1]

    spread = shard is not None and len(jobs) >= shard.world_size
    log = print if main_rank or spread else None
    results = convert_many(jobs, job_options(args), interpolator, shard, log, progress_for, known_errors())
    for bar in bars:
        bar.close()
    for source, _, result in results:
        name = os.path.basename(source)
        if isinstance(result, BaseException):
            sys.stdout.flush()
            if isinstance(result, DecodeFailure):
                _report(result.summary, args.montage)
            print(f"error: {name}: {error_message(result)}", file=sys.stderr)
            failed.append(name)
        elif result.joined:
            _report(result, args.montage)
    ran = len(results) if spread else len(jobs)
    print(f"done: {ran - len(failed)} of {ran} video(s) written to {args.output}"
          + (f" by rank {shard.rank}" if spread else "")
          + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return EXIT_SOME_FAILED if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
