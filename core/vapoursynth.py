"""UPR-Net as a VapourSynth filter, and a PyAV source, for .vpy scripts (docs/vapoursynth.md)::

    import vapoursynth as vs
    from core import vapoursynth as upr      # not `import core.vapoursynth`: that would rebind the name `core`
    clip = upr.source("clip.mp4")            # RGB24, the file's rate; or a folder of frames
    clip = upr.interpolate(clip, factor_num=2)            # or fps_num=60000, fps_den=1001
    clip.set_output()

Frames are made on request, in any order, with the video engine's timing (:mod:`core.engine.plan`, docs/video.md):
output frame n sits at source position s = n * r_in / r_out; it is source frame floor(s) when s is whole (or past
the last frame), else the frame interpolated between floor(s) and floor(s) + 1 at t = s - floor(s). All frames
between one pair come from one :meth:`core.Interpolator.interpolate_tensors` call (motion estimated once) and
are kept for the pair's later requests. A pair is held (its in-between frames repeat the left frame) when the left frame's
``_SceneChangeNext`` or the right frame's ``_SceneChangePrev`` is set, and by the engine's rules
(:class:`core.engine.plan.PairPlanner`): a scene cut when ``sc=True`` (mean grey-thumbnail difference above
``sc_threshold``), a duplicate pair (largest difference below ``dup_threshold``).

Importing this module does not need VapourSynth; calling :func:`interpolate` or :func:`source` does
(``pip install -e ".[vapoursynth]"``, Python >= 3.12).
"""
import collections
import fractions
import os
import threading

import numpy as np
import torch

from .checkpoint import CheckpointError
from .engine.plan import PairPlanner, output_count, source_of
from .frames import FrameError, read_image
from .interpolator import InputError, Interpolator
from .video import DEFAULT_DUPLICATE_THRESHOLD, DEFAULT_SCENE_THRESHOLD, VideoError, open_reader

RGB_FIX = 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")'
"""The conversion a non-RGB clip needs, named in the error (use the clip's own matrix: "470bg" for SD)."""
PAIRS_KEPT = 4
"""Interpolated pairs kept for later requests (VapourSynth's threads ask for neighbouring frames out of order)."""
SOURCE_FRAMES_KEPT = 16
"""Decoded frames :func:`source` keeps for requests that come slightly out of order."""


def _vs():
    try:
        import vapoursynth
    except ImportError:
        raise ImportError('core.vapoursynth needs VapourSynth: pip install -e ".[vapoursynth]" (Python >= 3.12, '
                          "docs/vapoursynth.md)") from None
    return vapoursynth


# ---------------------------------------------------------------------------------------------- frames

def _check_rgb(clip, vs, what="interpolate"):
    """A vs.Error naming the fix unless ``clip`` is constant-size RGB (8-16 bit integer, half or single float)."""
    fmt = clip.format
    if fmt is None or clip.width == 0 or clip.height == 0:
        raise vs.Error(f"upr.{what}: the clip has a variable format or size; make it constant first "
                       f"(e.g. core.resize.Bicubic(clip, width=W, height=H, format=vs.RGBS, matrix_in_s=\"709\"))")
    if fmt.color_family != vs.RGB:
        raise vs.Error(f"upr.{what}: the clip is {fmt.name}, but RGBS, RGBH or RGB24 is needed: convert it with "
                       f"{RGB_FIX} (the clip's matrix: \"470bg\" for SD, \"709\" for HD)")
    if fmt.sample_type == vs.FLOAT and fmt.bits_per_sample not in (16, 32):
        raise vs.Error(f"upr.{what}: unsupported float format {fmt.name}: use RGBS or RGBH")
    if fmt.sample_type == vs.INTEGER and fmt.bits_per_sample > 16:
        raise vs.Error(f"upr.{what}: unsupported format {fmt.name}: use RGB24, RGB48, RGBH or RGBS")


def frame_to_array(frame):
    """A VapourSynth RGB frame -> 3 x H x W numpy array of its samples (uint8 / uint16 / float16 / float32):
    one copy, from the three planes (whose rows may be padded) into one block."""
    planes = [np.asarray(frame[p]) for p in range(3)]
    out = np.empty((3,) + planes[0].shape, planes[0].dtype)
    for p, plane in enumerate(planes):
        out[p] = plane
    return out


def array_to_frame(array, frame):
    """Write a 3 x H x W array (already of the frame's sample type) into the planes of the writable ``frame``."""
    for p in range(3):
        np.copyto(np.asarray(frame[p]), array[p])
    return frame


def _to_tensor(array, device, bits):
    """3 x H x W samples -> 1 x 3 x H x W float32 on ``device``, in [0, 1] for integer samples (x / (2^bits - 1),
    as core.frames.to_float); the samples travel as they are and are converted there."""
    if array.dtype == np.uint16:
        array = array.astype(np.int32)
    tensor = torch.from_numpy(array).to(device)[None].float()
    return tensor / float((1 << bits) - 1) if bits else tensor


def _to_samples(tensor, dtype, bits):
    """1 x 3 x H x W float32 -> 3 x H x W numpy samples of ``dtype``, converted on the tensor's device: integers
    clipped to [0, 1], scaled by 2^bits - 1 and rounded half up (as core.frames.from_float); floats cast."""
    if bits:
        scaled = tensor[0].clamp(0, 1) * float((1 << bits) - 1) + 0.5
        return scaled.to(torch.uint8 if dtype == np.uint8 else torch.int32).cpu().numpy().astype(dtype, copy=False)
    return tensor[0].to(torch.float16 if dtype == np.float16 else torch.float32).cpu().numpy()


def _resolve_device(device):
    """None -> "auto"; an int k -> "cuda:k"; a string ("cpu", "cuda", "cuda:1", "mps") as it is."""
    if device is None:
        return "auto"
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        return f"cuda:{int(device)}"
    return device


# ---------------------------------------------------------------------------------------------- the filter

class _Pairs:
    """The frames between each pair, computed once per pair under a lock and kept for :data:`PAIRS_KEPT` pairs.
    Which frames a pair makes, and whether it is held, is the video engine's decision
    (:class:`core.engine.plan.PairPlanner` on the two frames), plus the scene-change frame properties."""

    def __init__(self, interpolator, ratio, frames_out, scene_threshold, dup_threshold, bits):
        self.interpolator = interpolator
        self.ratio = ratio
        self.frames_out = frames_out
        self.scene_threshold = scene_threshold
        self.dup_threshold = dup_threshold
        self.bits = bits
        self.kept = collections.OrderedDict()     # left -> {n: 3 x H x W samples} or None (held)
        self.lock = threading.Lock()

    def get(self, left, n, frame0, frame1):
        """Output frame n (between source frames left and left + 1) as samples, or None when the pair is held."""
        with self.lock:
            if left not in self.kept:
                self.kept[left] = self._compute(left, frame0, frame1)
                while len(self.kept) > PAIRS_KEPT:
                    self.kept.popitem(last=False)
            else:
                self.kept.move_to_end(left)
            frames = self.kept[left]
        return None if frames is None else frames[n]

    def _for_planner(self, array):
        """H x W x 3 view the engine's thumbnails read right: 8- and 16-bit samples and floats as they are, other
        depths (10, 12 bits in uint16) as floats in [0, 1]."""
        image = np.moveaxis(array, 0, -1)
        if self.bits in (None, 8, 16):
            return image
        return image.astype(np.float32) / np.float32((1 << self.bits) - 1)

    def _compute(self, left, frame0, frame1):
        if frame0.props.get("_SceneChangeNext", 0) or frame1.props.get("_SceneChangePrev", 0):
            return None
        array0, array1 = frame_to_array(frame0), frame_to_array(frame1)
        if self.bits is None:
            for index, array in ((left, array0), (left + 1, array1)):
                if not np.isfinite(array).all():
                    raise InputError(f"source frame {index} contains NaN or infinite values")
        planner = PairPlanner(self.ratio, self.scene_threshold, self.dup_threshold, start=left)
        planner.push(self._for_planner(array0))
        work = planner.push(self._for_planner(array1))
        if work.hold:
            return None
        outputs = [(n, t) for n, t in zip(work.outputs, work.times) if t != 0 and n < self.frames_out]
        device = getattr(self.interpolator, "device", "cpu")
        image0, image1 = (_to_tensor(a, device, self.bits) for a in (array0, array1))
        results, _ = self.interpolator.interpolate_tensors(image0, image1, [float(t) for _, t in outputs])
        return {n: _to_samples(result, array0.dtype, self.bits) for (n, _), result in zip(outputs, results)}


def load_interpolator(model_size="base", model_file=None, device=None, precision="fp32", scale=1.0, **options):
    """A :class:`core.Interpolator` for the filter's model arguments (``device``: None for CUDA when there is one,
    a CUDA index, or a torch device string; further ``options`` go to the Interpolator)."""
    if float(scale) != 1.0:
        options["scale"] = scale     # only when asked, so an Interpolator without the option works at 1
    return Interpolator.from_checkpoint(model_file, model_size=model_size, device=_resolve_device(device),
                                        precision=precision, **options)


def interpolate(clip, factor_num=2, factor_den=1, fps_num=None, fps_den=None, scale=1.0, sc=False,
                sc_threshold=DEFAULT_SCENE_THRESHOLD, dup_threshold=DEFAULT_DUPLICATE_THRESHOLD, model_size="base",
                model_file=None, device=None, precision="fp32", pyr_level=None, interpolator=None):
    """Raise the frame rate of ``clip`` (RGB: 8- to 16-bit integer such as RGB24 / RGB48, RGBH or RGBS; constant
    size and rate) with UPR-Net.

    factor_num / factor_den: output rate = input rate * factor (default 2); fps_num / fps_den: an output rate
    instead (fps_den default 1). The output has round(N * r_out / r_in) frames, of the input's format and size,
    at the new rate (frames past the last input frame repeat it).
    scale: 1, 0.5, 0.25, 0.125: motion at that fraction of the resolution (synthesis stays at full resolution).
    sc: also detect scene cuts with the project's detector (mean grey-thumbnail difference > ``sc_threshold``,
    in [0, 1]); ``_SceneChangeNext`` / ``_SceneChangePrev`` properties are honoured always. dup_threshold: pairs
    that differ less (:func:`core.video.duplicate_score`) are held too (0 disables). A cut or duplicate pair is
    held: its in-between frames repeat the left frame.
    model_size / model_file / device / precision ("fp32", "bf16", "fp16") / pyr_level: as every tool's model
    options (device: None = CUDA if available else the CPU, an int = that CUDA device, or "cpu", "cuda:1", ...).
    interpolator: a ready :class:`core.Interpolator` to use instead (the model options are then ignored).
    Raises vs.Error with one line for bad formats or arguments.
    """
    vs = _vs()
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"upr.interpolate: clip must be a video clip (vs.VideoNode), got {type(clip).__name__}")
    _check_rgb(clip, vs)
    if clip.fps == 0:
        raise vs.Error("upr.interpolate: the clip has a variable frame rate; give it one first "
                       "(core.std.AssumeFPS(clip, fpsnum=N, fpsden=D))")
    try:
        if fps_num is not None:
            out_fps = fractions.Fraction(int(fps_num), int(fps_den if fps_den is not None else 1))
        elif fps_den is not None:
            raise vs.Error("upr.interpolate: fps_den needs fps_num")
        else:
            out_fps = clip.fps * fractions.Fraction(int(factor_num), int(factor_den))
    except (ValueError, TypeError, ZeroDivisionError) as error:
        raise vs.Error(f"upr.interpolate: bad factor or rate: {error}") from None
    if out_fps <= 0:
        raise vs.Error(f"upr.interpolate: the output rate must be positive, got {out_fps}")
    for name, value in (("sc_threshold", sc_threshold), ("dup_threshold", dup_threshold)):
        if not 0 <= value <= 1:
            raise vs.Error(f"upr.interpolate: {name} must lie in [0, 1] (0 disables), got {value}")
    if interpolator is None:
        try:
            interpolator = load_interpolator(model_size, model_file, device, precision, scale, pyr_level=pyr_level)
        except (InputError, CheckpointError, OSError, RuntimeError, TypeError) as error:
            raise vs.Error(f"upr.interpolate: {error}") from None

    ratio = out_fps / clip.fps
    frames_in = clip.num_frames
    frames_out = output_count(frames_in, ratio)
    core = vs.core
    timed = clip.std.SetFrameProps(_DurationNum=out_fps.denominator, _DurationDen=out_fps.numerator)
    blank = core.std.BlankClip(timed, length=frames_out, fpsnum=out_fps.numerator, fpsden=out_fps.denominator)
    pairs = _Pairs(interpolator, ratio, frames_out, sc_threshold if sc else 0, dup_threshold,
                   clip.format.bits_per_sample if clip.format.sample_type == vs.INTEGER else None)

    def left_of(n):
        return source_of(n, ratio)[0]

    left = blank.std.FrameEval(lambda n: timed[min(left_of(n), frames_in - 1)])
    right = blank.std.FrameEval(lambda n: timed[min(left_of(n) + 1, frames_in - 1)])

    def make(n, f):
        try:
            samples = pairs.get(left_of(n), n, f[0], f[1])
        except InputError as error:      # NaN / infinite samples
            raise vs.Error(f"upr.interpolate: output frame {n}: {error}") from None
        except torch.cuda.OutOfMemoryError:
            raise vs.Error(f"upr.interpolate: output frame {n}: out of GPU memory at {clip.width}x{clip.height}; "
                           "try scale=0.5, precision=\"fp16\" or a smaller clip") from None
        if samples is None:
            return f[0]
        return array_to_frame(samples, f[0].copy())

    between = blank.std.ModifyFrame(clips=[left, right], selector=make)

    def choose(n):
        k, t = source_of(n, ratio, frames_in)
        return timed[k] if t == 0 else between

    return blank.std.FrameEval(choose)


# ---------------------------------------------------------------------------------------------- the source

class _Decoder:
    """Serves frame k of a video or frame folder: folders read the file; videos decode sequentially, keep the last
    :data:`SOURCE_FRAMES_KEPT` frames, and start again from the beginning for a frame before those."""

    def __init__(self, path, fps):
        self.path, self.fps = path, fps
        self.reader = open_reader(path, fps)
        self.frames = None
        self.position = 0
        self.kept = collections.OrderedDict()
        self.lock = threading.Lock()

    def count(self):
        """The number of frames: a folder's files, or every frame of the video decoded once (exact)."""
        if self.reader.is_folder:
            return self.reader.frame_count
        with open_reader(self.path, self.fps) as reader:
            return sum(1 for _ in reader)

    def get(self, k):
        with self.lock:
            if self.reader.is_folder:
                try:
                    return read_image(self.reader.files[k])
                except FrameError as error:
                    raise VideoError(str(error)) from None
            if k in self.kept:
                return self.kept[k]
            if self.frames is None or k < self.position:
                if self.frames is not None:            # the first pass uses the reader opened for the metadata
                    self.reader.close()
                    self.reader = open_reader(self.path, self.fps)
                self.frames, self.position = iter(self.reader), 0
            for frame in self.frames:
                self.kept[self.position] = frame
                while len(self.kept) > SOURCE_FRAMES_KEPT:
                    self.kept.popitem(last=False)
                self.position += 1
                if self.position > k:
                    return frame
            raise VideoError(f"{self.path}: frame {k} could not be decoded")


def source(path, fps=None):
    """A video file (through PyAV) or a folder of frames as a constant-rate RGB24 clip (RGB48 for 16-bit PNGs),
    at the file's rate (``fps``: override it; a folder's default is 25). Frames are decoded on request: in order
    it is one sequential decode; a request for a frame before the last few decoded ones decodes again from the
    start (fine for short clips; for long ones, use a source plugin). The video is decoded once at the start to
    count its frames exactly. Raises vs.Error with one line for a missing or unreadable input."""
    vs = _vs()
    path = os.fspath(path)
    try:
        decoder = _Decoder(path, fps)
        frames = decoder.count()
        first = decoder.get(0)
    except (VideoError, OSError) as error:
        raise vs.Error(f"upr.source: {error}") from None
    rate = fractions.Fraction(decoder.reader.fps).limit_denominator(1_000_000)
    height, width = first.shape[:2]
    fmt = vs.RGB48 if first.dtype == np.uint16 else vs.RGB24
    blank = vs.core.std.BlankClip(width=width, height=height, format=fmt, length=frames, fpsnum=rate.numerator,
                                  fpsden=rate.denominator, keep=True)
    blank = blank.std.SetFrameProps(_Matrix=int(vs.MATRIX_RGB), _Range=int(vs.RANGE_FULL))

    def fill(n, f):
        try:
            image = decoder.get(n)
        except VideoError as error:
            raise vs.Error(f"upr.source: {error}") from None
        return array_to_frame(np.moveaxis(image, -1, 0), f.copy())

    return blank.std.ModifyFrame(clips=blank, selector=fill)
