"""Timing of a frame-rate conversion and the segment plan: pure functions, no I/O, no model.

Input frame i sits at i / r, output frame j at j / F; with ``ratio`` = F / r, output j maps to the source position
s = j / ratio: frame floor(s) itself when s is whole, else the frame interpolated between floor(s) and
floor(s) + 1 at t = s - floor(s). N input frames give :func:`output_count` = round(N * ratio) output frames; those
past the last input frame repeat it. The pair (i, i + 1) gives the output frames j in
[ceil(i * ratio), ceil((i + 1) * ratio)) (:func:`pair_outputs`). docs/video.md, Timing, says the same in words.

Segments: the input is cut into segments of ``length`` input frames. Segment k owns the pairs whose left frame
lies in [k * length, (k + 1) * length), the output frames of those pairs and, for the last segment, the held
tail frames; it reads input frames k * length .. (k + 1) * length (one past its end). Scene-cut and duplicate
decisions depend on the pair alone, so every segment can be computed without the ones before it.

    from core.engine.plan import source_of, output_count
    i, t = source_of(j, ratio)          # output frame j: input frame i (t == 0) or the pair (i, i + 1) at t
"""
import dataclasses
import fractions
import math

import numpy as np

from ..video import (DEFAULT_SCENE_THRESHOLD, DUPLICATE_THUMBNAIL_SIZE, THUMBNAIL_SIZE, grey_thumbnail)

DEFAULT_SEGMENT_FRAMES = 60
"""Input frames per segment (2 s at 30 fps): the most work a resumed job redoes."""


def _ratio(ratio):
    ratio = fractions.Fraction(ratio)
    if ratio <= 0:
        raise ValueError("the frame-rate ratio must be positive")
    return ratio


def output_count(frames_in, ratio):
    """Output frames for ``frames_in`` input frames: round(N * ratio), halves up (0 for no input)."""
    if frames_in <= 0:
        return 0
    return math.floor(frames_in * _ratio(ratio) + fractions.Fraction(1, 2))


def first_output(index, ratio):
    """The first output frame whose source position is >= input frame ``index``: ceil(index * ratio)."""
    return math.ceil(index * _ratio(ratio))


def pair_outputs(index, ratio):
    """range of the output frames j whose source position lies in [index, index + 1)."""
    return range(first_output(index, ratio), first_output(index + 1, ratio))


def pair_times(index, ratio):
    """The times t (Fractions in [0, 1)) of the output frames of the pair (index, index + 1), in order; t == 0
    is frame ``index`` itself."""
    ratio = _ratio(ratio)
    return [j / ratio - index for j in pair_outputs(index, ratio)]


def source_of(j, ratio, frames_in=None):
    """Output frame ``j`` -> (i, t): input frame i itself when t == 0, else the pair (i, i + 1) at t (a
    Fraction in (0, 1)). With ``frames_in`` = N, positions at or past the last input frame give (N - 1, 0) (the
    held tail)."""
    position = j / _ratio(ratio)
    i = math.floor(position)
    if frames_in is not None and i >= frames_in - 1:
        return frames_in - 1, fractions.Fraction(0)
    return i, position - i


@dataclasses.dataclass(frozen=True)
class Segment:
    """Segment ``index`` of a plan: the pairs whose left frame lies in [first, stop); it reads input frames
    first .. stop (inclusive, when they exist)."""
    index: int
    first: int
    stop: int

    def outputs(self, ratio):
        """range of the output frames of its pairs (without the held tail of a last segment)."""
        return range(first_output(self.first, ratio), first_output(self.stop, ratio))

    def reads(self, frame):
        """True when input frame ``frame`` is one this segment reads."""
        return self.first <= frame <= self.stop


def segment_of(frame, length):
    """The index of the segment owning the pair whose left frame is ``frame``."""
    return frame // length


def segment(index, length):
    """Segment ``index`` for segments of ``length`` input frames."""
    if length < 1:
        raise ValueError(f"a segment holds at least one input frame, got {length}")
    return Segment(index, index * length, (index + 1) * length)


# ---------------------------------------------------------------------------------------------- pair decisions

@dataclasses.dataclass
class PairWork:
    """What the pair (index, index + 1) contributes to the output.

    frame0, frame1: the input frames; outputs: the output frame numbers; times: their t (Fractions, 0 = frame0
    itself); hold: True across a scene cut or for a duplicate pair (every output repeats frame0); cut /
    duplicate: why. ``between`` is the list of t > 0 the model must make (empty when held).
    """
    index: int
    frame0: object
    frame1: object
    outputs: range
    times: list
    cut: bool = False
    duplicate: bool = False

    @property
    def hold(self):
        return self.cut or self.duplicate

    @property
    def between(self):
        return [] if self.hold else [t for t in self.times if t != 0]


class PairPlanner:
    """Streams input frames into :class:`PairWork` records: ``push(frame)`` returns the record of the pair that
    the frame closes (None for the first frame). ``start``: the input index of the first frame pushed (a segment
    starting past frame 0). Keeps one frame and two thumbnails; the cut / duplicate decision of a pair looks at
    that pair only (scene: mean absolute difference of 16-pixel thumbnails above ``scene_threshold``; duplicate:
    largest difference of 64-pixel thumbnails below ``dup_threshold``; 0 disables either)."""

    def __init__(self, ratio, scene_threshold=DEFAULT_SCENE_THRESHOLD, dup_threshold=0, start=0):
        self.ratio = _ratio(ratio)
        self.scene_threshold = scene_threshold or 0
        self.dup_threshold = dup_threshold or 0
        self.next_index = start
        self.previous = None
        self._scene_thumb = None
        self._dup_thumb = None

    def push(self, frame):
        scene = grey_thumbnail(frame, THUMBNAIL_SIZE) if self.scene_threshold > 0 else None
        dup = grey_thumbnail(frame, DUPLICATE_THUMBNAIL_SIZE) if self.dup_threshold > 0 else None
        previous, index = self.previous, self.next_index - 1
        work = None
        if previous is not None:
            cut = scene is not None and float(np.abs(scene - self._scene_thumb).mean()) > self.scene_threshold
            duplicate = (not cut and dup is not None
                         and float(np.abs(dup - self._dup_thumb).max()) < self.dup_threshold)
            work = PairWork(index, previous, frame, pair_outputs(index, self.ratio), pair_times(index, self.ratio),
                            cut, duplicate)
        self.previous, self._scene_thumb, self._dup_thumb = frame, scene, dup
        self.next_index += 1
        return work


class FrameRateConverter:
    """Turns a stream of frames at rate r into frames at rate F = ``ratio`` * r (see the module docstring).

    ``interpolate(frame0, frame1, times)`` returns a list of frames. ``push(frame)`` returns the output frames
    that became ready, ``finish()`` the rest. Only the previous frame is kept. Pairs across a scene cut
    (``cuts``) and duplicate pairs (``duplicates``, see ``dup_threshold``) are not interpolated: their
    in-between frames repeat the first frame of the pair. Every output frame returned by ``push`` has the
    previous input frame as its source frame (floor of its source position), every one returned by
    ``finish`` the last input frame. The one-call, one-pair form of the engine (:mod:`core.engine.pipeline`
    batches the same records).
    """

    def __init__(self, interpolate, ratio, scene_threshold=DEFAULT_SCENE_THRESHOLD, dup_threshold=0):
        self.interpolate = interpolate
        self.ratio = _ratio(ratio)
        self.planner = PairPlanner(self.ratio, scene_threshold, dup_threshold)
        self.frames_in = 0
        self.frames_out = 0
        self.interpolated = 0
        self.cuts = []  # i: a cut between input frames i and i + 1
        self.duplicates = []  # i: input frames i and i + 1 are duplicates

    @property
    def previous(self):
        return self.planner.previous

    def push(self, frame):
        work = self.planner.push(frame)
        self.frames_in += 1
        if work is None:
            return []
        if work.cut:
            self.cuts.append(work.index)
        elif work.duplicate:
            self.duplicates.append(work.index)
        between = work.between
        made = iter(self.interpolate(work.frame0, work.frame1, [float(t) for t in between]) if between else [])
        self.interpolated += len(between)
        self.frames_out += len(work.outputs)
        return [work.frame0 if (t == 0 or work.hold) else next(made) for t in work.times]

    def finish(self):
        """Frames up to round(N * ratio) in total: the last input frame, held."""
        if self.previous is None:
            return []
        total = max(self.frames_out, output_count(self.frames_in, self.ratio))
        out = [self.previous] * (total - self.frames_out)
        self.frames_out = total
        return out
