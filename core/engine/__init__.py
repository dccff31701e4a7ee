"""The video engine: frame-rate conversion of long videos, pipelined (decode, model, encode overlap), in
resumable segments, spread over the ranks of a shard. The tool ``tools.interp_video`` and the VapourSynth and
web fronts call it::

    from core.engine import VideoJobOptions, convert_video
    summary = convert_video("clip.mp4", "clip_x2.mp4", VideoJobOptions(multi=2), interpolator,
                            progress=lambda done, total: ...)

Timing (which input pair and t each output frame has) lives in :mod:`core.engine.plan`, segments and the join in
:mod:`core.engine.segments`, the threads in :mod:`core.engine.pipeline`. docs/video.md explains the behaviour.
"""
from .job import (DecodeFailure, JobError, JobSummary, VideoJobOptions, convert_many, convert_video,
                  describe_summary)
from .plan import (DEFAULT_SEGMENT_FRAMES, FrameRateConverter, PairPlanner, output_count, pair_outputs, pair_times,
                   source_of)
from .segments import parts_folder

__all__ = ["DecodeFailure", "JobError", "JobSummary", "VideoJobOptions", "convert_many", "convert_video",
           "describe_summary", "DEFAULT_SEGMENT_FRAMES", "FrameRateConverter", "PairPlanner", "output_count",
           "pair_outputs", "pair_times", "source_of", "parts_folder"]
