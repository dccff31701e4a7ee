"""Clip conversion for the web app: the video engine behind one call, and the side-by-side montage.

``engine_converter(source, output, rate, interpolator, progress)`` converts through
:func:`core.engine.convert_video`; ``rate`` is ("multi", m) or ("fps", Fraction). It returns
{"frames_in", "frames_out", "fps_out"}.
"""
import fractions

import numpy as np

from ..engine import VideoJobOptions, convert_video, source_of
from ..video import open_reader, open_writer


def engine_converter(source, output, rate, interpolator, progress=None):
    """Convert ``source`` to ``output`` with core.engine (see the module docstring); ``progress(done, total)``
    counts output frames written."""
    kind, value = rate
    options = VideoJobOptions(multi=value) if kind == "multi" else VideoJobOptions(fps=fractions.Fraction(value))
    summary = convert_video(source, output, options, interpolator, progress=progress)
    return summary_dict(summary, output)


def summary_dict(summary, output):
    """{"frames_in", "frames_out", "fps_out"} from an engine summary (core.engine.JobSummary or a dict), read
    back from the written file where the summary does not say."""
    get = (lambda key: summary.get(key)) if isinstance(summary, dict) else (lambda key: getattr(summary, key, None))
    result = {"frames_in": get("frames_in"), "frames_out": get("frames_out"),
              "fps_out": get("out_fps") or get("fps_out")}
    if result["frames_out"] is None or result["fps_out"] is None:
        with open_reader(output) as reader:
            result["fps_out"] = result["fps_out"] or reader.fps
            if result["frames_out"] is None:
                result["frames_out"] = sum(1 for _ in reader)
    result["fps_out"] = str(fractions.Fraction(result["fps_out"]))
    return result


def write_montage(source, result, output):
    """Write ``output``: the input (left, held at the output rate: output frame j shows input frame
    floor(j * r_in / r_out)) beside ``result`` (right), at the result's rate. Returns the frames written."""
    with open_reader(source) as left_reader, open_reader(result) as right_reader:
        ratio = fractions.Fraction(right_reader.fps) / fractions.Fraction(left_reader.fps)
        left_frames = iter(left_reader)
        left, left_index = next(left_frames), 0
        writer = None
        written = 0
        try:
            for j, right in enumerate(right_reader):
                wanted = source_of(j, ratio)[0]     # the engine's timing: the input frame at or before j
                while left_index < wanted:
                    following = next(left_frames, None)
                    if following is None:
                        break              # the result's held last frames: keep the last input frame
                    left, left_index = following, left_index + 1
                if writer is None:
                    height, width = right.shape[:2]
                    writer = open_writer(output, right_reader.fps, 2 * width, height)
                if left.shape != right.shape:
                    import cv2
                    left = cv2.resize(left, (right.shape[1], right.shape[0]), interpolation=cv2.INTER_AREA)
                writer.write(np.concatenate([left, right], axis=1))
                written += 1
        finally:
            if writer is not None:
                writer.close()
    return written
