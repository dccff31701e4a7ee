"""Forward warping by splatting (Niklaus & Liu, "Softmax Splatting for Video Frame Interpolation", CVPR 2020).

Every source pixel (x, y) of ``input`` is pushed to X = x + flow_x, Y = y + flow_y and added to the four
integer neighbours of (X, Y) with bilinear weights. Neighbours outside the frame are dropped one by one;
nothing is clamped. Gradients: w.r.t. ``input`` the transpose of the splat, w.r.t. ``flow`` the derivative of
the bilinear weights with floor(X), floor(Y) held constant (what autograd gives through ``torch.floor``).

Modes (``splat(input, flow, metric, mode)``):
    summation  the raw splat of ``input``.
    average    splat [input, 1], divide by the splatted ones.
    linear     splat [input * metric, metric], divide.
    softmax    splat [input * exp(metric), exp(metric)], divide (no max subtraction).
A normaliser that is exactly 0 (no pixel landed there) is replaced by 1, so empty pixels come out 0.

A flow of non-finite values (NaN, inf) splats nothing.

Every splat runs as a PyTorch operator (``torch.ops.upr.splat_prepare`` / ``splat_apply``;
:mod:`core.ops.operators`) whose kernel asks the registry (:mod:`core.ops.registry`) for the device's backend
(:mod:`core.ops.backends`):
    "torch"   pure PyTorch (sorted embedding_bag; scatter_add on MPS), every device, deterministic; the reference
              the others are tested against (:mod:`core.ops.backends.reference`).
    "cpp"     a C++ kernel (:mod:`core.ops.backends.cpp`) for CPU tensors, compiled on first use; 6-13x faster than
              the reference at 640x480.
    "triton"  Triton kernels (:mod:`core.ops.backends.triton`) for CUDA tensors when triton is importable.
    "cupy"    CUDA kernels (:mod:`core.ops.backends.cupy`) for CUDA tensors when CuPy is importable (and triton is
              not).
    "auto"    (default) cpp for CPU tensors, triton or else cupy for CUDA tensors, each when available; torch
              otherwise, and torch for CUDA tensors under ``torch.use_deterministic_algorithms(True)`` (the
              Triton and CuPy forwards add with atomics).
Force one with :func:`set_backend` or the environment variable ``UPR_SPLAT_BACKEND=auto|torch|cpp|cupy|triton``; a
forced backend that cannot serve a tensor raises RuntimeError.

Inside :func:`core.ops.export_friendly.exporting` (ONNX export) a :class:`Splatting` made there splats with plain
tensor ops instead (:func:`core.ops.backends.reference.scatter_sum`).
"""
import torch

from . import export_friendly
from . import operators  # noqa: F401  (registers torch.ops.upr.splat_prepare / splat_apply)
from . import registry
from .backends import reference

MODES = ("summation", "average", "linear", "softmax")
_LOW_PRECISION = (torch.float16, torch.bfloat16)

set_backend = registry.set_backend
get_backend = registry.get_backend


class Splatting:
    """Bilinear forward splatting by one flow field, prepared once and applied to any number of inputs.

    flow: N x 2 x H x W (pixels, x first). The flow-only work (``torch.ops.upr.splat_prepare``: corner cells and
    weights for the C++ kernel, the corner contributions ordered by target for the reference) is done once per
    kernel layout and cached; each input is then splatted by ``torch.ops.upr.splat_apply``, differentiable
    w.r.t. the input and the flow. The "average" normaliser is computed once and cached. The result is
    channels_last if the input is, contiguous otherwise.

    Made inside :func:`core.ops.export_friendly.exporting`, it splats with plain tensor ops instead (one
    ``scatter_add`` per splat, for ONNX; sizes may be symbolic there).
    """

    def __init__(self, flow):
        if flow.dim() != 4 or flow.shape[1] != 2:
            raise ValueError(f"splat: flow must be N x 2 x H x W, got {tuple(flow.shape)}")
        if flow.dtype in _LOW_PRECISION:
            flow = flow.float()
        self.flow = flow
        self.shape = (flow.shape[0], flow.shape[2], flow.shape[3])
        self.exporting = export_friendly.active()     # the one export hook of splatting
        self._prepared = {}
        self._normalisers = {}

    def prepared(self, layout):
        """The prepared tensors (index, offsets, weight) of this flow in ``layout`` (cached)."""
        if layout not in self._prepared:
            self._prepared[layout] = torch.ops.upr.splat_prepare(self.flow.detach(), layout)
        return self._prepared[layout]

    def sum(self, input, weight=None, rows=None):
        """Summation splat of ``input`` (N x C x H x W), each source pixel optionally scaled by ``weight``
        (N x 1 x H x W, applied per pixel before splatting). ``rows`` = (y0, y1) computes only output rows
        y0 .. y1-1 (N x C x (y1-y0) x W), from all source pixels."""
        n, h, w = self.shape
        if input.dim() != 4 or input.shape[0] != n or tuple(input.shape[2:]) != (h, w):
            raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(self.flow.shape)} do not match")
        if input.dtype in _LOW_PRECISION:
            input = input.float()
        if weight is not None:
            input = input * weight
        if self.exporting:
            output = reference.scatter_sum(input, self.flow)
            return output if rows is None else output[:, :, rows[0]:rows[1]]
        y0, y1 = rows if rows is not None else (0, h)
        layout = registry.layout_for(input.device.type)
        return torch.ops.upr.splat_apply(input, self.flow, *self.prepared(layout), layout, y0, y1)

    def normaliser(self, weight=None, rows=None):
        """Splatted per-pixel weights (ones by default), N x 1 x H x W (or the given rows); exact zeros are
        replaced by 1. Cached for the default weights."""
        if weight is None and rows in self._normalisers:
            return self._normalisers[rows]
        ones = self.flow.new_ones(self.shape[0], 1, *self.shape[1:]) if weight is None else weight
        normaliser = _nonzero(self.sum(ones, rows=rows))
        if weight is None:
            self._normalisers[rows] = normaliser
        return normaliser

    def average(self, input, rows=None):
        """Average splatting: the splat of ``input`` divided by the splat of ones (optionally only ``rows``)."""
        return self.sum(input, rows=rows) / self.normaliser(rows=rows)

    def weighted_average(self, input, weight=None):
        """The splat of ``input * weight`` divided by the splat of ``weight`` (N x 1 x H x W; ones by default: the
        :meth:`average`). Exporting, both in one splat of [input * weight, weight]."""
        if not self.exporting:
            return self.sum(input, weight) / self.normaliser(weight)
        if input.dtype in _LOW_PRECISION:
            input = input.float()
        weight = torch.ones_like(input[:, :1]) if weight is None else weight.to(input.dtype)
        both = self.sum(torch.cat([input * weight, weight], 1))
        c = input.shape[1]
        return both[:, :c] / _nonzero(both[:, c:])


def _nonzero(normaliser):
    """An exact 0 (no pixel landed there) replaced by 1, so empty pixels come out 0."""
    return torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)


def splat_sum(input, flow):
    """Summation splatting. input: N x C x H x W, flow: N x 2 x H x W (pixels, x first). Returns N x C x H x W
    (float16/bfloat16 are splatted in float32)."""
    return Splatting(flow).sum(input)


def splat(input, flow, metric=None, mode="average"):
    """Forward-warp ``input`` (N x C x H x W) by ``flow`` (N x 2 x H x W, pixels) in the given mode.

    ``metric`` (N x 1 x H x W) is required for "linear" and "softmax" and ignored otherwise.
    """
    if mode not in MODES:
        raise ValueError(f"unknown splatting mode {mode!r}; use one of {MODES}")
    splatting = Splatting(flow)
    if mode == "summation":
        return splatting.sum(input)
    if mode == "average":
        return splatting.weighted_average(input)
    if metric is None:
        raise ValueError(f"splatting mode {mode!r} needs a metric")
    return splatting.weighted_average(input, metric if mode == "linear" else torch.exp(metric))
