"""Raise the frame rate of a video, a folder of frames or a folder of videos with UPR-Net.

    python -m tools.interp_video --input clip.mp4 --output clip_x2.mp4 --multi 2     # 25 -> 50 fps
    python -m tools.interp_video --input clip.mp4 --output clip_60.mp4 --fps 60      # any target rate
    python -m tools.interp_video --input videos/ --output out/ --multi 2             # one output per video
    python -m tools.interp_video --input clip.mp4 --output part.mp4 --multi 2 --start 1:05 --end 1:10.5 --montage

Timing, time range, scene cuts, duplicates, montage, audio, inputs and outputs, output checks: docs/video.md.
"""
import argparse
import fractions
import math
import os
import re
import sys
import tempfile
import time
import warnings

import av
import numpy as np
from tqdm import tqdm

from core.cli import (UsageError, add_model_arguments, cli_main, error_message, interpolator_from_args, known_errors,
                      tool_parser)
from core.video import (DEFAULT_CRF, DEFAULT_DUPLICATE_THRESHOLD, DEFAULT_SCENE_THRESHOLD, DUPLICATE_THUMBNAIL_SIZE,
                        VIDEO_EXTENSIONS, SceneCutDetector, VideoDecodeWarning, grey_thumbnail, is_folder_output,
                        is_video_file, list_frame_files, open_reader, open_writer)

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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    return parser.parse_args(argv)


class FrameRateConverter:
    """Turns a stream of frames at rate r into frames at rate F = ``ratio`` * r (see docs/video.md, Timing).

    ``interpolate(frame0, frame1, times)`` returns a list of frames. ``push(frame)`` returns the output frames
    that became ready, ``finish()`` the rest. Only the previous frame is kept. Pairs across a scene cut
    (``cuts``) and duplicate pairs (``duplicates``, see ``dup_threshold``) are not interpolated: their
    in-between frames repeat the first frame of the pair. Every output frame returned by ``push`` has the
    previous input frame as its source frame (floor of its source position), every one returned by
    ``finish`` the last input frame.
    """

    def __init__(self, interpolate, ratio, scene_threshold=DEFAULT_SCENE_THRESHOLD, dup_threshold=0):
        self.interpolate = interpolate
        self.ratio = fractions.Fraction(ratio)
        if self.ratio <= 0:
            raise ValueError("the frame-rate ratio must be positive")
        self.detector = SceneCutDetector(scene_threshold)
        self.dup_threshold = dup_threshold or 0
        self.previous = None
        self.previous_thumbnail = None
        self.frames_in = 0
        self.frames_out = 0
        self.interpolated = 0
        self.cuts = []  # i: a cut between input frames i and i + 1
        self.duplicates = []  # i: input frames i and i + 1 are duplicates

    def _pending_times(self, index):
        """Times t = s - index of the next output frames whose source position s lies before index + 1."""
        times = []
        while self.frames_out / self.ratio < index + 1:
            times.append(self.frames_out / self.ratio - index)
            self.frames_out += 1
        return times

    def _is_duplicate(self, frame):
        if self.dup_threshold <= 0:
            return False
        thumbnail = grey_thumbnail(frame, DUPLICATE_THUMBNAIL_SIZE)
        previous, self.previous_thumbnail = self.previous_thumbnail, thumbnail
        return previous is not None and float(np.abs(thumbnail - previous).max()) < self.dup_threshold

    def push(self, frame):
        self.frames_in += 1
        cut = self.detector.push(frame)
        duplicate = self._is_duplicate(frame)
        if self.previous is None:
            self.previous = frame
            return []
        index = self.frames_in - 2  # the pair (index, index + 1)
        if cut:
            self.cuts.append(index)
        elif duplicate:
            self.duplicates.append(index)
        hold = cut or duplicate
        times = self._pending_times(index)
        between = [t for t in times if t != 0]
        made = iter(self.interpolate(self.previous, frame, [float(t) for t in between])
                    if between and not hold else [])
        if between and not hold:
            self.interpolated += len(between)
        out = [self.previous if (t == 0 or hold) else next(made) for t in times]
        self.previous = frame
        return out

    def finish(self):
        """Frames up to round(N * ratio) in total: the last input frame, held."""
        if self.previous is None:
            return []
        total = max(self.frames_out, math.floor(self.frames_in * self.ratio + fractions.Fraction(1, 2)))
        out = [self.previous] * (total - self.frames_out)
        self.frames_out = total
        return out


def _describe_rate(rate):
    """50 -> "50", 30000/1001 -> "29.97", 7/3 -> "7/3 (~2.333)"."""
    text = f"{float(rate):g}"
    return text if rate.denominator == 1 or len(text) < 8 else f"{rate} (~{float(rate):.3f})"


def _describe_time(seconds):
    seconds = float(seconds)
    return f"{int(seconds // 60)}:{seconds % 60:06.3f}" if seconds >= 60 else f"{seconds:.3f} s"


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
    if existing and not args.overwrite:
        raise UsageError(f"{len(existing)} output file(s) exist already ({', '.join(existing[:3])}"
                         f"{' ...' if len(existing) > 3 else ''}); pass --overwrite to replace them")
    for source, target in jobs:
        if _same_path(source, target):
            raise UsageError(f"output {target} is its input; use another --output or --output_ext")
        if os.path.isdir(target):
            raise UsageError(f"output {target} is a folder")
    return jobs


def _frame_range(args, fps):
    """(first, stop) input frame indices for --start / --end at ``fps`` (stop None: to the end)."""
    first = math.ceil(args.start * fps) if args.start is not None else 0
    stop = math.ceil(args.end * fps) if args.end is not None else None
    return first, stop


def _range_frames(reader, first, stop):
    """The frames first .. stop - 1 of ``reader`` (by count: frame i sits at i / fps)."""
    if reader.is_folder:
        reader.files = reader.files[first:stop]
        reader.frame_count = len(reader.files)
        yield from reader
        return
    for index, frame in enumerate(reader):
        if stop is not None and index >= stop:
            break
        if index >= first:
            yield frame


def interpolate_one(args, source, output, get_interpolator, label="interpolating"):
    """Convert one input (a video or a frame folder) to ``output``; prints what it does; returns a summary
    string. Errors propagate; a partly written video file is removed."""
    to_folder = is_folder_output(output)
    reader = open_reader(source, args.input_fps)
    writer = None
    try:
        with reader:
            in_fps = reader.fps
            out_fps = in_fps * args.multi if args.multi is not None else args.fps
            ratio = out_fps / in_fps
            first, stop = _frame_range(args, in_fps)
            known = reader.frame_count or None
            if known is not None and reader.is_folder and first >= known:
                raise UsageError(f"--start {_describe_time(args.start)} is past the end of {source} "
                                 f"({known} frames, {_describe_time(known / in_fps)})")
            interpolator = get_interpolator()
            pyr_level, skipped = interpolator.pyramid_for(reader.height, reader.width)
            kind = "frames" if reader.is_folder else "video"
            print(f"input: {source} ({kind}, {reader.width}x{reader.height}, {_describe_rate(in_fps)} fps"
                  f"{', ~%d frames' % reader.frame_count if reader.frame_count else ''}"
                  f"{', audio ' + str(reader.audio) if reader.audio else ''})")
            if first or stop is not None:
                print(f"range: input frames {first} to {'the end' if stop is None else stop - 1} "
                      f"({_describe_time(first / in_fps)} to "
                      f"{'the end' if stop is None else _describe_time(stop / in_fps)})")
            print(f"model: UPR-Net {args.model_size} on {interpolator.device}, pyramid levels {pyr_level} "
                  f"(skipped {skipped}); scene threshold {args.scene_threshold:g}"
                  + (" (off)" if args.scene_threshold <= 0 else "")
                  + f", duplicate threshold {args.dup_threshold:g}" + (" (off)" if args.dup_threshold <= 0 else ""))
            copy_audio = reader.audio is not None and not args.no_audio and not to_folder
            if reader.audio is not None and to_folder and not args.no_audio:
                print("note: a PNG folder has no audio track; the audio is left out")
            width = 2 * reader.width if args.montage else reader.width
            if not to_folder and (width % 2 or reader.height % 2):
                print(f"note: odd size {width}x{reader.height}: the video is stored as "
                      f"{width + width % 2}x{reader.height + reader.height % 2} (last row/column repeated)")

            converter = FrameRateConverter(lambda a, b, times: interpolator.interpolate(a, b, times), ratio,
                                           args.scene_threshold, args.dup_threshold)

            def emit(frames, left):
                nonlocal writer
                for frame in frames:
                    if writer is None:  # opened once the first frame is decoded: its time anchors the audio
                        options = {}
                        if not to_folder:
                            offset = (reader.first_frame_time or 0.0) + float(first / in_fps)
                            keep = None
                            if first or stop is not None:
                                keep = (0.0 if first else None,
                                        None if stop is None else float((stop - first) / in_fps))
                            options = dict(audio_source=source if copy_audio else None, audio_offset=offset,
                                           audio_range=keep, color_tags=reader.color_tags, codec=args.codec,
                                           crf=args.crf)
                        writer = open_writer(output, out_fps, width, reader.height, **options)
                    if args.montage:
                        frame = np.concatenate([left, frame], axis=1)
                    writer.write(frame)

            start = time.perf_counter()
            total = known if known is None else max(0, (known if stop is None else min(known, stop)) - first)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VideoDecodeWarning)  # reported once at the end instead
                with tqdm(total=total or None, unit="frame", desc=label, file=sys.stderr, disable=args.quiet,
                          dynamic_ncols=True) as progress:
                    for frame in _range_frames(reader, first, stop):
                        left = converter.previous
                        emit(converter.push(frame), left)
                        progress.update(1)
                        if converter.cuts or converter.duplicates:
                            progress.set_postfix(cuts=len(converter.cuts), dups=len(converter.duplicates),
                                                 refresh=False)
                    emit(converter.finish(), converter.previous)
            if converter.frames_in == 0:
                raise UsageError(f"--start {_describe_time(args.start or 0)} is past the end of {source} "
                                 f"({reader.frames_read} frames, {_describe_time(reader.frames_read / in_fps)})")
            elapsed = time.perf_counter() - start
        if writer is not None:
            writer.close()
    except BaseException as error:
        if writer is not None:
            try:
                writer.close()  # interrupted (Ctrl-C): a valid, shorter video stays
            except Exception:
                pass
            if isinstance(error, Exception) and not to_folder and os.path.isfile(output):
                os.remove(output)  # failed: a partial video is of no use
        raise

    n_in, n_out = converter.frames_in, converter.frames_out
    audio_note = ""
    if copy_audio and writer is not None and writer.audio is not None:
        audio_note = "; audio copied" if writer.audio.copy else \
            f"; audio re-encoded to {writer.audio.stream.codec_context.name}"
    print(f"output: {output} ({'PNG frames' if to_folder else 'video'}{', montage' if args.montage else ''}, "
          f"{n_out} frames at {_describe_rate(out_fps)} fps, {float(n_out / out_fps):.3f} s; input {n_in} frames, "
          f"{float(n_in / in_fps):.3f} s{audio_note})")
    cuts = ""
    if converter.cuts:
        shown = ", ".join(map(str, converter.cuts[:20])) + (" ..." if len(converter.cuts) > 20 else "")
        cuts = f" after input frame(s) {shown}"
    summary = (f"{converter.interpolated} frames interpolated in {elapsed:.1f} s; "
               f"{len(converter.cuts)} scene cut(s){cuts}; {len(converter.duplicates)} duplicate pair(s) skipped")
    print(summary)
    if reader.decode_error:
        print(f"warning: {reader.decode_error}", file=sys.stderr)
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
        check_output(args.output, [args.input], args.overwrite)
        to_folder = is_folder_output(args.output)
        if to_folder and os.path.isdir(args.output) and list_frame_files(args.output):
            raise UsageError(f"output folder {args.output} already holds PNG files; choose an empty or new folder")
        interpolate_one(args, args.input, args.output, lambda: interpolator_from_args(args))
        return 0

    jobs = _batch_jobs(args, videos)
    print(f"{len(jobs)} video(s) in {args.input} -> {args.output}")
    interpolator = interpolator_from_args(args)  # once for all files; a bad checkpoint stops everything
    os.makedirs(args.output, exist_ok=True)
    failed = []
    errors = known_errors()
    for number, (source, target) in enumerate(jobs, 1):
        name = os.path.basename(source)
        try:
            interpolate_one(args, source, target, lambda: interpolator, f"[{number}/{len(jobs)}] {name}")
        except errors as error:
            sys.stdout.flush()
            print(f"error: {name}: {error_message(error)}", file=sys.stderr)
            failed.append(name)
    print(f"done: {len(jobs) - len(failed)} of {len(jobs)} video(s) written to {args.output}"
          + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return EXIT_SOME_FAILED if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
