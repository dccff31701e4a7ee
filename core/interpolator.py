"""High-level frame interpolation: any frame size and format in, frames at any times out.

    interpolator = Interpolator.from_checkpoint()           # the shipped base checkpoint
    middle = interpolator.interpolate(frame0, frame1)       # H x W x 3 uint8 RGB in, same out
    frames = interpolator.interpolate(frame0, frame1, [0.25, 0.5, 0.75])

Frames are padded on the right and bottom with 0.5 to a multiple of max(64, 2^(L+1)) (the benchmark protocol)
and cropped back. Motion is estimated once per pair and reused for every time step.

Speed knobs (docs/benchmarks.md has the speed/quality table): ``scale=0.5`` / ``0.25`` estimate motion at a
reduced resolution (synthesis stays at full resolution), ``precision="bf16"`` / ``"fp16"`` autocast, and
``compile=True`` runs the model through torch.compile.
"""
import math
import os

import numpy as np
import torch

from .checkpoint import CheckpointError, default_model_file, load_model
from .device import apply_allocator_policy, default_memory_format, resolve_device
from .frames import FrameError, from_float, image_to_tensor, pad_multiple, pad_to_multiple, tensor_to_float

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_CHECKPOINT = os.path.join(REPO_ROOT, "checkpoints", "upr-base.pkl")
STILL_THRESHOLD = 0.25 / 255
"""Default ``still_threshold``: a pair whose mean absolute difference is below a quarter of an 8-bit level is the
same picture twice (a still shot, a held or duplicated frame): its answer is that picture, which the network only
approximates (the shipped checkpoint given one frame twice returns it with up to 27 levels of error, 48-57 dB)."""


class InputError(ValueError):
    """Frames or times that cannot be interpolated, with the reason."""


def choose_pyramid(height, width):
    """Pyramid depth for a resolution: (pyr_level, nr_lvl_skipped).

    The paper uses L=3 at Vimeo90K's 448x256 (and UCF101's 256x256), L=5 on SNU-FILM (up to 1280x720) and L=7
    with 2 skipped levels on 4K. Between those points we pick by the longest side:
    <= 640: (3, 0);  <= 1280: (5, 0);  <= 2048 (1080p, 2K): (6, 1);  larger: (7, 2).
    Each extra level doubles the motion the coarsest level can see (about 4 px x 4 x 2^(L-1)).
    """
    longest = max(height, width)
    if longest <= 640:
        return 3, 0
    if longest <= 1280:
        return 5, 0
    if longest <= 2048:
        return 6, 1
    return 7, 2


SCALES = {1.0: 0, 0.5: 1, 0.25: 2, 0.125: 3}
"""``scale`` -> the number of finest pyramid levels skipped on top of the resolution's (or the explicit) choice."""
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``precision`` -> the autocast dtype (None: no autocast)."""


def scale_skips(scale):
    """The extra skipped levels of ``scale`` (1 -> 0, 0.5 -> 1, 0.25 -> 2, 0.125 -> 3); InputError otherwise."""
    try:
        return SCALES[float(scale)]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"scale must be 1, 0.5, 0.25 or 0.125, got {scale!r}") from None


def scaled_pyramid(pyr_level, nr_lvl_skipped, scale, level_fixed=False):
    """The pyramid (pyr_level, nr_lvl_skipped) that estimates motion at ``scale`` of the resolution of the pyramid
    (pyr_level, nr_lvl_skipped): log2(1 / scale) more finest levels skip motion estimation (their flow is the
    coarsest estimate upsampled), while pyr_level, hence the coarsest level and the largest motion it sees, stays.
    When no level would be left to estimate motion, pyr_level is raised to nr_lvl_skipped + 1 (the coarsest
    level sees more motion), or, with ``level_fixed`` (an explicit pyr_level), that is an InputError."""
    skipped = nr_lvl_skipped + scale_skips(scale)
    if skipped < pyr_level:
        return pyr_level, skipped
    if level_fixed:
        raise InputError(f"scale {scale:g} skips {skipped} pyramid levels, which leaves none of pyr_level={pyr_level} "
                         f"to estimate motion: use a pyr_level of at least {skipped + 1} or a larger scale")
    return skipped + 1, skipped


def _as_batch(frame, name):
    """numpy H x W x C (uint8/uint16/float) or tensor [1 x] 3 x H x W (uint8 or float) -> N x 3 x H x W float32."""
    if isinstance(frame, np.ndarray):
        try:
            return image_to_tensor(frame)
        except FrameError as error:
            raise InputError(f"{name}: {error}") from None
    if isinstance(frame, torch.Tensor):
        tensor = frame.unsqueeze(0) if frame.dim() == 3 else frame
        if tensor.dim() != 4 or tensor.shape[1] != 3:
            raise InputError(f"{name}: expected a 3 x H x W or N x 3 x H x W tensor, got {tuple(frame.shape)}")
        if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
            raise InputError(f"{name}: unsupported tensor dtype {tensor.dtype}")
        return tensor_to_float(tensor)
    raise InputError(f"{name}: expected a numpy array or a torch tensor, got {type(frame).__name__}")


def _check_times(time_periods, batch):
    """Times -> a list of K time steps, each a float (the same for every pair) or an N tensor (float32, CPU) of
    per-pair times. ``time_periods``: a float, a list of K floats, or N lists of K floats (pair n's k-th frame at
    time_periods[n][k])."""
    try:
        array = np.asarray(time_periods, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("time_period: expected a float, a list of floats or one list of floats per pair of "
                         "equal lengths") from None
    if array.ndim > 2:
        raise InputError(f"time_period: expected at most one list of times per pair, got shape {array.shape}")
    if array.ndim == 2 and array.shape[0] != batch:
        raise InputError(f"time_period: {array.shape[0]} lists of times for {batch} pairs")
    bad = [float(t) for t in array.flat if not (math.isfinite(t) and 0.0 <= t <= 1.0)]
    if bad or not array.size:
        raise InputError(f"time_period must lie in [0, 1], got {bad or 'nothing'}")
    if array.ndim < 2:
        return [float(t) for t in np.atleast_1d(array)]
    return [float(column[0]) if (column == column[0]).all() else torch.from_numpy(column.astype(np.float32))
            for column in array.T]


def _per_pair(t, like):
    """A float or an N tensor of times -> something that broadcasts against N x C x H x W ``like``."""
    return t.to(like.device).reshape(-1, 1, 1, 1) if isinstance(t, torch.Tensor) else t


def _like_input(result, frame):
    """Convert a 1 x 3 x H x W float result back to the kind of ``frame`` (numpy dtype or tensor layout)."""
    if isinstance(frame, torch.Tensor):
        result = result.to(frame.device)
        if frame.dtype == torch.uint8:
            result = (result * 255.0).round().to(torch.uint8)
        return result[0] if frame.dim() == 3 else result
    return from_float(result[0].permute(1, 2, 0).cpu().numpy(), frame.dtype)


STRIP_PIXELS = 2_500_000
"""Padded frames larger than this (above ~1080p) are synthesized in strips when ``low_memory="auto"``."""
STRIP_ROWS = 256
"""Strip height: at 4K a strip with its margins is ~1.2 MP, which keeps the peak near 6.5 GB."""


def synthesized_in_strips(height, width, low_memory="auto"):
    """Whether a padded frame of height x width is synthesized in strips: always for ``low_memory`` True, never
    for False, above :data:`STRIP_PIXELS` for "auto"."""
    return low_memory is True or (low_memory == "auto" and height * width > STRIP_PIXELS)


class Interpolator:
    """Wraps a UPR-Net for inference on frames of any size.

    pyr_level / nr_lvl_skipped: fixed pyramid, or None to choose by resolution (:func:`choose_pyramid`).
    low_memory: "auto" synthesizes frames of more than :data:`STRIP_PIXELS` in exact strips of
        :data:`STRIP_ROWS` rows (4K fits in a few GB), True always does, False never does.
    channels_last: run convolutions on channels_last tensors (None: on the CPU, where oneDNN is ~1.5x faster
        with them); results agree with the default layout to float rounding.
    precision: "fp32" (exact, default), "bf16" or "fp16" (autocast: convolutions in bfloat16 / float16; splatting
        with its normalisation and the correlation are computed in float32 whatever the autocast). bf16 is faster
        on CPUs with AVX512-BF16 / AMX and on recent GPUs, slightly less accurate; fp16 is meant for CUDA (it runs
        on the CPU too, slowly without AVX512-FP16 / AMX-FP16).
    scale: 1 (default), 0.5, 0.25 or 0.125: motion is estimated at this fraction of the resolution, synthesis
        stays at full resolution (RIFE's --scale). It skips log2(1 / scale) more finest pyramid levels than
        pyr_level / nr_lvl_skipped (explicit or by resolution) do, keeping pyr_level (see :func:`scaled_pyramid`).
    compile: False (default), True (torch.compile with Inductor) or a torch.compile backend (name or callable):
        motion estimation and synthesis run compiled (one compilation per frame size and pyramid, times passed as
        tensors so that they do not recompile; the first pair is slow).
    still_threshold: pairs whose mean absolute difference (in [0, 1]) is below it are still: every time step is
        (1 - t) * frame0 + t * frame1 (the picture itself) and their flow is zero, without running the network
        (default :data:`STILL_THRESHOLD`; 0 always runs it).
    On the CPU, frames up to :data:`core.device.KEEP_MEMORY_PIXELS` switch the process's malloc to keeping freed
    memory (faster; see :func:`core.device.keep_freed_memory`; opt out with UPR_KEEP_FREED_MEMORY=0).
    """

    def __init__(self, model, device="auto", pyr_level=None, nr_lvl_skipped=None, low_memory="auto",
                 channels_last=None, precision="fp32", still_threshold=STILL_THRESHOLD, scale=1.0, compile=False):
        self.device = resolve_device(device)
        if not still_threshold >= 0:
            raise InputError(f"still_threshold must be at least 0, got {still_threshold}")
        self.still_threshold = still_threshold
        if precision not in PRECISIONS:
            raise InputError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        scale_skips(scale)
        self.scale = float(scale)
        if pyr_level is not None:
            scaled_pyramid(pyr_level, nr_lvl_skipped or 0, self.scale, level_fixed=True)   # fails early
        if compile not in (False, None) and not (compile is True or isinstance(compile, str) or callable(compile)):
            raise InputError(f"compile must be False, True or a torch.compile backend, got {compile!r}")
        self.compile = compile or False
        if low_memory not in ("auto", True, False):
            raise InputError(f"low_memory must be 'auto', True or False, got {low_memory!r}")
        if channels_last is None:
            self.memory_format = default_memory_format(self.device)
        else:
            self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.channels_last = self.memory_format == torch.channels_last
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        self.pyr_level = pyr_level
        self.nr_lvl_skipped = nr_lvl_skipped
        self.low_memory = low_memory
        self.precision = precision
        self._compiled = None

    @classmethod
    def from_checkpoint(cls, model_file=None, model_size="base", device="auto", **kwargs):
        """Load ``model_file`` (default: found by ``model_size`` in checkpoints/, see
        :func:`core.checkpoint.default_model_file`: for base an official upr.pkl, else the shipped checkpoint) into
        the network the file records (:func:`core.checkpoint.load_model`; files without options, like the
        official ones, are built as ``model_size``)."""
        if model_file is None:
            try:
                model_file = default_model_file(model_size)
            except CheckpointError as error:
                raise InputError(str(error)) from None
        return cls(load_model(model_file, model_size=model_size), device, **kwargs)

    def pyramid_for(self, height, width):
        """(pyr_level, nr_lvl_skipped) run for frames of height x width: the explicit values, else
        :func:`choose_pyramid`'s (an explicit pyr_level other than the resolution's skips nothing unless
        nr_lvl_skipped says so), then :attr:`scale` applied (:func:`scaled_pyramid`)."""
        auto_level, auto_skipped = choose_pyramid(height, width)
        pyr_level = self.pyr_level if self.pyr_level is not None else auto_level
        if self.nr_lvl_skipped is not None:
            skipped = self.nr_lvl_skipped
        else:
            skipped = auto_skipped if self.pyr_level in (None, auto_level) else 0
        return scaled_pyramid(pyr_level, skipped, self.scale, level_fixed=self.pyr_level is not None)

    def _model_calls(self):
        """(estimate_motion, synthesize): the model's methods, or their torch.compile'd versions (made once)."""
        if not self.compile:
            return self.model.estimate_motion, self.model.synthesize
        if self._compiled is None:
            backend = "inductor" if self.compile is True else self.compile
            self._compiled = tuple(torch.compile(fn, backend=backend, dynamic=False)
                                   for fn in (self.model.estimate_motion, self.model.synthesize))
        return self._compiled

    @torch.no_grad()
    def interpolate_tensors(self, img0, img1, time_periods=(0.5,)):
        """img0, img1: N x 3 x H x W float in [0, 1] (any device). time_periods: K times in [0, 1] for every pair,
        or N lists of K times (pair n's k-th frame at time_periods[n][k]). Returns (list of K N x 3 x H x W
        frames, one per time step, and the bi-directional flow N x 4 x H x W in input pixels), on the model's
        device."""
        if img0.shape != img1.shape:
            raise InputError(f"frame sizes differ: {tuple(img0.shape[-2:])} vs {tuple(img1.shape[-2:])}")
        for name, img in (("frame0", img0), ("frame1", img1)):
            if not torch.isfinite(img).all():
                raise InputError(f"{name} contains NaN or infinite values")
        times = _check_times(time_periods, img0.shape[0])
        if self.still_threshold <= 0:
            return self._run_network(img0, img1, times)
        still = (img0 - img1).abs().flatten(1).mean(1) < self.still_threshold    # N booleans
        if not still.any():
            return self._run_network(img0, img1, times)
        blends = [((1 - _per_pair(t, img0)) * img0 + _per_pair(t, img0) * img1).to(self.device, torch.float32)
                  for t in times]
        if still.all():
            return blends, torch.zeros(img0.shape[0], 4, *img0.shape[-2:], device=self.device)
        frames, bi_flow = self._run_network(img0, img1, times)
        keep = still.to(self.device)[:, None, None, None]
        return ([torch.where(keep, blend, frame) for blend, frame in zip(blends, frames)],
                torch.where(keep, torch.zeros_like(bi_flow), bi_flow))

    def _run_network(self, img0, img1, times):
        h, w = img0.shape[-2:]
        pyr_level, nr_lvl_skipped = self.pyramid_for(h, w)
        multiple = pad_multiple(pyr_level)
        img0, img1 = (pad_to_multiple(img.to(self.device), multiple).contiguous(memory_format=self.memory_format)
                      for img in (img0, img1))
        strips = synthesized_in_strips(*img0.shape[-2:], self.low_memory)
        apply_allocator_policy(self.device, img0.shape[-2] * img0.shape[-1])
        estimate_motion, synthesize = self._model_calls()
        if self.compile:    # t as a tensor: one graph for every time (a float would be specialised per value)
            times = [t if isinstance(t, torch.Tensor) else torch.full((img0.shape[0],), t) for t in times]
        times = [t.to(self.device) if isinstance(t, torch.Tensor) else t for t in times]
        dtype = PRECISIONS[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            levels = estimate_motion(img0, img1, pyr_level, nr_lvl_skipped)
            frames = [synthesize(levels, t, STRIP_ROWS if strips else None)[0][..., :h, :w].float()
                      for t in times]
        bi_flow = levels[-1].full_flow[..., :h, :w].float()
        return frames, bi_flow

    def interpolate(self, frame0, frame1, time_periods=0.5, return_flow=False):
        """Interpolate between two frames of the same size.

        frame0, frame1: RGB numpy H x W x 3 (uint8, uint16 or float in [0, 1]; grayscale and RGBA accepted)
        or float tensors 3 x H x W / N x 3 x H x W in [0, 1]. time_periods: a float or a list of floats in [0, 1].
        Returns a frame of the same kind as ``frame0`` (a list of them when a list of times is given), and with
        ``return_flow`` also the bi-directional flow (1 x 4 x H x W tensor, input pixels).
        """
        single = np.ndim(time_periods) == 0
        img0, img1 = _as_batch(frame0, "frame0"), _as_batch(frame1, "frame1")
        frames, bi_flow = self.interpolate_tensors(img0, img1, [time_periods] if single else time_periods)
        frames = [_like_input(frame.cpu(), frame0) for frame in frames]
        result = frames[0] if single else frames
        return (result, bi_flow.cpu()) if return_flow else result
