"""Raise the frame rate of a video (or a folder of PNG frames) with UPR-Net.

    python -m tools.interp_video --input clip.mp4 --output clip_x2.mp4 --multi 2     # 25 -> 50 fps
    python -m tools.interp_video --input clip.mp4 --output clip_60.mp4 --fps 60      # any target rate
    python -m tools.interp_video --input frames/ --output out/ --multi 4             # PNG folders

Timing. Input frame i sits at time i / r (constant frame rate r) and is shown until (i + 1) / r, so N frames
last N / r. Output frame j sits at j / F; it maps to source position s = j * r / F and is frame floor(s)
itself when s is a whole number, else the frame interpolated between floor(s) and floor(s) + 1 at
t = s - floor(s); all output frames between one pair come from one call, so the motion is estimated once
per pair. The output has round(N * F / r) frames, so it lasts as long as the input (to within half an
output frame); frames past the last input frame repeat it. With --multi m (F = m * r) that is exactly m * N
frames: the m - 1 frames between each pair at t = k / m, and m - 1 copies of the last frame at the end.

Scene cuts. When the pair (i, i + 1) differs by more than --scene_threshold (mean absolute difference of
16-pixel grey thumbnails, in [0, 1]; default 0.10; 0 disables) it is a cut: frame i is repeated instead of
morphing between two shots, and the new shot starts exactly at its original time. See core/video.py.

Audio is copied unchanged (re-encoded to AAC only if the output container cannot hold it) and stays in
sync. Odd sizes work: PNG output keeps them; video output is padded by one repeated row / column, since 4:2:0
video needs even sizes. Input: a video file or a folder of *.png frames (natural order, --input_fps, default 25).
Output: a video for .mp4 .m4v .mov .mkv .avi .webm; a PNG folder when it ends with "/", is a folder, or has
no video extension.
"""
import argparse
import fractions
import math
import os
import sys
import time
import warnings

import av
from tqdm import tqdm

from core.cli import UsageError, add_model_arguments, cli_main, interpolator_from_args
from core.video import (DEFAULT_CRF, DEFAULT_SCENE_THRESHOLD, SceneCutDetector, VideoDecodeWarning,
                        is_folder_output, list_frame_files, open_reader, open_writer)


def parse_rate(text):
    """'50', '59.94' or '60000/1001' -> a positive Fraction."""
    try:
        rate = fractions.Fraction(text).limit_denominator(1001000)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a frame rate: {text!r}") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"a frame rate must be positive, got {text}")
    return rate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.interp_video", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="video file, or a folder of *.png frames")
    parser.add_argument("--output", required=True,
                        help="video file (.mp4 .m4v .mov .mkv .avi .webm) or a folder for PNG frames")
    rate = parser.add_mutually_exclusive_group(required=True)
    rate.add_argument("--multi", type=int, metavar="M",
                      help="M x the frame rate: insert M-1 frames between each pair (2, 4, 8, ...)")
    rate.add_argument("--fps", type=parse_rate, metavar="F",
                      help="output frame rate, e.g. 60 or 60000/1001 (frames at any fractional time)")
    parser.add_argument("--input_fps", type=parse_rate, default=None, metavar="R",
                        help="frame rate of a PNG-folder input (default 25), or to override a video's rate")
    parser.add_argument("--scene_threshold", type=float, default=DEFAULT_SCENE_THRESHOLD, metavar="S",
                        help=f"scene-cut threshold in [0, 1] (default {DEFAULT_SCENE_THRESHOLD}; 0 disables): "
                             "across a cut the last frame is repeated instead of interpolated")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF,
                        help=f"video quality, lower is better (libx264 CRF, default {DEFAULT_CRF})")
    parser.add_argument("--codec", default=None,
                        help="video encoder (default: libx264, else mpeg4; libvpx-vp9 for .webm)")
    parser.add_argument("--no_audio", action="store_true", help="do not copy the audio")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    return parser.parse_args(argv)


class FrameRateConverter:
    """Turns a stream of frames at rate r into frames at rate F = ``ratio`` * r (see the module docstring).

    ``interpolate(frame0, frame1, times)`` returns a list of frames. ``push(frame)`` returns the output frames
    that became ready, ``finish()`` the rest. Only the previous frame is kept.
    """

    def __init__(self, interpolate, ratio, scene_threshold=DEFAULT_SCENE_THRESHOLD):
        self.interpolate = interpolate
        self.ratio = fractions.Fraction(ratio)
        if self.ratio <= 0:
            raise ValueError("the frame-rate ratio must be positive")
        self.detector = SceneCutDetector(scene_threshold)
        self.previous = None
        self.frames_in = 0
        self.frames_out = 0
        self.interpolated = 0
        self.cuts = []  # i: a cut between input frames i and i + 1

    def _pending_times(self, index):
        """Times t = s - index of the next output frames whose source position s lies before index + 1."""
        times = []
        while self.frames_out / self.ratio < index + 1:
            times.append(self.frames_out / self.ratio - index)
            self.frames_out += 1
        return times

    def push(self, frame):
        self.frames_in += 1
        cut = self.detector.push(frame)
        if self.previous is None:
            self.previous = frame
            return []
        index = self.frames_in - 2  # the pair (index, index + 1)
        if cut:
            self.cuts.append(index)
        times = self._pending_times(index)
        between = [t for t in times if t != 0]
        made = iter(self.interpolate(self.previous, frame, [float(t) for t in between])
                    if between and not cut else [])
        if between and not cut:
            self.interpolated += len(between)
        out = [self.previous if (t == 0 or cut) else next(made) for t in times]
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


@cli_main
def main(argv=None):
    args = parse_args(argv)
    if args.multi is not None and args.multi < 2:
        raise UsageError(f"--multi must be at least 2, got {args.multi}")
    if not 0 <= args.scene_threshold <= 1:
        raise UsageError(f"--scene_threshold must lie in [0, 1] (0 disables), got {args.scene_threshold:g}")
    if args.codec is not None and args.codec not in av.codecs_available:
        raise UsageError(f"--codec {args.codec}: no such encoder in PyAV's FFmpeg")
    if not os.path.exists(args.input):
        raise UsageError(f"input not found: {args.input}")
    if os.path.abspath(args.input.rstrip("/\\")) == os.path.abspath(args.output.rstrip("/\\")):
        raise UsageError("--input and --output are the same path")
    to_folder = is_folder_output(args.output)
    if to_folder and os.path.isdir(args.output) and list_frame_files(args.output):
        raise UsageError(f"output folder {args.output} already holds PNG files; choose an empty or new folder")

    reader = open_reader(args.input, args.input_fps)
    with reader:
        in_fps = reader.fps
        out_fps = in_fps * args.multi if args.multi is not None else args.fps
        ratio = out_fps / in_fps
        interpolator = interpolator_from_args(args)
        pyr_level, skipped = interpolator.pyramid_for(reader.height, reader.width)
        source = "PNG frames" if reader.is_folder else "video"
        print(f"input: {args.input} ({source}, {reader.width}x{reader.height}, {_describe_rate(in_fps)} fps"
              f"{', ~%d frames' % reader.frame_count if reader.frame_count else ''}"
              f"{', audio ' + str(reader.audio) if reader.audio else ''})")
        print(f"model: UPR-Net {args.model_size} on {interpolator.device}, pyramid levels {pyr_level} "
              f"(skipped {skipped}); scene threshold "
              f"{args.scene_threshold:g}" + (" (off)" if args.scene_threshold <= 0 else ""))
        copy_audio = reader.audio is not None and not args.no_audio and not to_folder
        if reader.audio is not None and to_folder and not args.no_audio:
            print("note: a PNG folder has no audio track; the audio is left out")
        if not to_folder and (reader.width % 2 or reader.height % 2):
            print(f"note: odd size {reader.width}x{reader.height}: the video is stored as "
                  f"{reader.width + reader.width % 2}x{reader.height + reader.height % 2} (last row/column repeated)")

        converter = FrameRateConverter(lambda a, b, times: interpolator.interpolate(a, b, times), ratio,
                                       args.scene_threshold)
        writer = None

        def emit(frames):
            nonlocal writer
            for frame in frames:
                if writer is None:  # opened once the first frame is decoded: its time anchors the audio
                    options = {}
                    if not to_folder:
                        options = dict(audio_source=args.input if copy_audio else None,
                                       audio_offset=reader.first_frame_time or 0.0,
                                       color_tags=reader.color_tags, codec=args.codec, crf=args.crf)
                    writer = open_writer(args.output, out_fps, reader.width, reader.height, **options)
                writer.write(frame)

        start = time.perf_counter()
        warnings.simplefilter("ignore", VideoDecodeWarning)  # reported once at the end instead
        try:
            with tqdm(total=reader.frame_count or None, unit="frame", desc="interpolating", file=sys.stderr,
                      disable=args.quiet, dynamic_ncols=True) as progress:
                for frame in reader:
                    emit(converter.push(frame))
                    progress.update(1)
                    if converter.cuts:
                        progress.set_postfix(cuts=len(converter.cuts), refresh=False)
                emit(converter.finish())
        finally:
            if writer is not None:
                writer.close()
        elapsed = time.perf_counter() - start

    n_in, n_out = converter.frames_in, converter.frames_out
    audio_note = ""
    if copy_audio and writer is not None and writer.audio is not None:
        audio_note = "; audio copied" if writer.audio.copy else \
            f"; audio re-encoded to {writer.audio.stream.codec_context.name}"
    print(f"output: {args.output} ({'PNG frames' if to_folder else 'video'}, {n_out} frames at "
          f"{_describe_rate(out_fps)} fps, {float(n_out / out_fps):.3f} s; input {n_in} frames, "
          f"{float(n_in / in_fps):.3f} s{audio_note})")
    cuts = ""
    if converter.cuts:
        shown = ", ".join(map(str, converter.cuts[:20])) + (" ..." if len(converter.cuts) > 20 else "")
        cuts = f" after input frame(s) {shown}"
    print(f"{converter.interpolated} frames interpolated in {elapsed:.1f} s; "
          f"{len(converter.cuts)} scene cut(s){cuts}")
    if reader.decode_error:
        print(f"warning: {reader.decode_error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
