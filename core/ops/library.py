"""Splatting and correlation as PyTorch operators (``torch.ops.upr.*``), one kernel per device.

The operators (schemas in :data:`OPS`; every one has a fake implementation, so ``torch.compile`` and
``torch.export`` trace through them, and the differentiable ones have registered autograd formulas whose
backward passes are themselves operators):

    splat_sum(input, flow) -> output                      summation splat, N x C x H x W by N x 2 x H x W
    splat_sum_backward_input(grad_output, flow)           its gradient w.r.t. the input
    splat_sum_backward_flow(grad_output, input, flow)     its gradient w.r.t. the flow (the floor held constant)
    splat_prepare(flow, layout) -> (index, offsets, weight)
    splat_apply(input, flow, index, offsets, weight, layout, y0, y1) -> output rows y0 .. y1-1
    splat_apply_backward_input(grad_output, flow, index, offsets, weight, layout, y0)
    splat_apply_backward_flow(grad_output, input, flow, index, offsets, weight, layout, y0)
    correlation(first, second, max_displacement) -> N x D^2 x H x W
    correlation_backward(grad_output, first, second, max_displacement) -> (grad_first, grad_second)

``splat_prepare`` / ``splat_apply`` split a splat into the work that depends on the flow alone and the work per
input, so that :class:`core.ops.softsplat.Splatting` prepares a flow once and splats several inputs with it
(the model splats an image, a feature map and a normaliser per flow). What the prepared tensors hold depends on
the kernel, named by ``layout`` (:func:`splat_layout` picks it for a device):

    "cells"   the C++ CPU kernel (``softsplat_cpu``): index = top-left target cell (x0, y0) per source pixel,
              N*H*W x 2 int32; weight = the four corner weights, N*H*W x 4; offsets empty.
    "bags"    the pure-PyTorch reference (sorted ``embedding_bag``, deterministic): index = source pixel of every
              corner contribution in target order (4*N*H*W), offsets = first contribution per output pixel
              (N*H*W), weight = the contributions' weights (4*N*H*W).
    "direct"  kernels without a preparation (Triton, CuPy; the index_add reference on MPS): all three empty.

Kernels, by device (the dispatcher picks the device's kernel; :func:`splat_kernel` picks among a device's
variants, in one place):

    CPU     the C++ kernel ("cpp") when it builds, the reference ("torch") otherwise; forced "triton" runs the
            Triton kernels in Triton's interpreter when TRITON_INTERPRET=1 (for tests).
    CUDA    Triton ("triton", ``softsplat_triton``) when triton is importable, else CuPy ("cupy",
            ``softsplat_cupy``) when CuPy is, else the reference. Under ``torch.use_deterministic_algorithms(True)``
            the reference (sorted: a deterministic summation order) instead of the atomic-add kernels.
    other   (MPS, ...) the reference, adding each corner with ``index_add_`` (no embedding_bag there).

``UPR_SPLAT_BACKEND=auto|torch|cpp|cupy|triton`` (or :func:`set_backend`) forces one; a forced backend that cannot
serve a tensor raises RuntimeError when the kernel runs. Correlation has one kernel (block matrix products,
:mod:`core.ops.correlation`) for every device.
"""
import functools
import os
import warnings

import torch
import torch.nn.functional as F
from torch.library import custom_op

BACKENDS = ("auto", "torch", "cupy", "cpp", "triton")
LAYOUTS = ("cells", "bags", "direct")
_backend = os.environ.get("UPR_SPLAT_BACKEND", "auto")
if _backend not in BACKENDS:
    warnings.warn(f"UPR_SPLAT_BACKEND={_backend!r} is not one of {BACKENDS}; using 'auto'", RuntimeWarning)
    _backend = "auto"


def set_backend(name):
    """Force a splatting backend ("torch", "cpp", "cupy", "triton") or let the device choose ("auto")."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown splatting backend {name!r}; use one of {BACKENDS}")
    _backend = name


def get_backend():
    return _backend


# Availability never changes within a process: under torch.compile these are called once, not traced (tracing
# would step into cpp_extension.load).
@torch.compiler.assume_constant_result
def cpp_available():
    from . import softsplat_cpu
    return softsplat_cpu.available()


@torch.compiler.assume_constant_result
def triton_available():
    try:
        from . import softsplat_triton
    except Exception:           # the module missing or broken: the next kernel serves
        return False
    return softsplat_triton.available()


@torch.compiler.assume_constant_result
def triton_interpreted():
    """Whether the Triton kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)."""
    if not triton_available():
        return False
    from . import softsplat_triton
    return softsplat_triton.interpreted()


@torch.compiler.assume_constant_result
def cupy_available():
    from . import softsplat_cupy
    return softsplat_cupy.available()


def splat_kernel(device_type, deterministic=None, backend=None):
    """The splatting kernel ("cpp", "torch", "triton" or "cupy") that serves tensors on ``device_type`` ("cpu",
    "cuda", "mps", ...) under the selected backend (``backend``, default :func:`get_backend`) and determinism
    setting (``deterministic``, default ``torch.are_deterministic_algorithms_enabled()``). A forced backend that
    cannot serve the device raises RuntimeError."""
    backend = _backend if backend is None else backend
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    if backend == "torch":
        return "torch"
    if device_type == "cuda":
        if backend == "cpp":
            raise RuntimeError("splatting backend 'cpp' was forced but the tensor is on cuda (the C++ kernel is "
                               "for CPU tensors)")
        if deterministic:
            # the Triton and CuPy forwards add with atomics: their summation order varies from run to run
            if backend != "auto":
                raise RuntimeError(f"splatting backend {backend!r} was forced but is not deterministic (atomic "
                                   "adds) and torch.use_deterministic_algorithms(True) is set; use 'auto' or "
                                   "'torch' (the sorted reference)")
            return "torch"
        if backend in ("auto", "triton") and triton_available():
            return "triton"
        if backend == "triton":
            raise RuntimeError("splatting backend 'triton' was forced but cannot splat CUDA tensors (triton is "
                               "not importable or core/ops/softsplat_triton.py is missing)")
        if backend in ("auto", "cupy") and cupy_available():
            return "cupy"
        if backend == "cupy":
            raise RuntimeError("splatting backend 'cupy' was forced but cannot splat CUDA tensors (CuPy is not "
                               "importable)")
        return "torch"
    if backend == "cupy":
        raise RuntimeError(f"splatting backend 'cupy' was forced but the tensor is not on a CUDA device "
                           f"({device_type})")
    if device_type != "cpu":
        if backend != "auto":
            raise RuntimeError(f"splatting backend {backend!r} was forced but the tensor is on {device_type}")
        return "torch"
    if backend == "triton":
        if triton_interpreted():
            return "triton"
        raise RuntimeError("splatting backend 'triton' was forced but the tensor is on the CPU (Triton runs CPU "
                           "tensors only in its interpreter: TRITON_INTERPRET=1)")
    if cpp_available():
        return "cpp"
    if backend == "cpp":
        raise RuntimeError("splatting backend 'cpp' was forced but the C++ kernel could not be built")
    return "torch"


def splat_layout(device_type, deterministic=None, backend=None):
    """The prepared-tensor layout of the kernel :func:`splat_kernel` picks for ``device_type``."""
    kernel = splat_kernel(device_type, deterministic, backend)
    if kernel == "cpp":
        return "cells"
    if kernel == "torch" and device_type in ("cpu", "cuda"):
        return "bags"
    return "direct"


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"unknown splat layout {layout!r}; use one of {LAYOUTS}")


def _memory_format(tensor):
    """channels_last for a channels-last (and not also contiguous) tensor, contiguous otherwise: the layout every
    splatting kernel returns its output in."""
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _empty_like_format(like, shape, dtype=None):
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device).contiguous(
        memory_format=_memory_format(like))


def bag_index_dtype(n, h, w):
    return torch.int32 if 4 * n * (h + 2) * (w + 1) < 2 ** 31 else torch.int64


# ------------------------------------------------------------------------------------------------- kernels

def _direct_kernel(device_type):
    """The kernel for "direct" prepared tensors on this device, chosen when it runs."""
    kernel = splat_kernel(device_type)
    return kernel if kernel in ("triton", "cupy") else "torch"


def _direct_sum(input, flow):
    """Full-frame summation splat by a kernel without preparation (Triton, CuPy, or the reference)."""
    kernel = _direct_kernel(input.device.type)
    if kernel == "triton":
        from . import softsplat_triton
        return softsplat_triton.splat_sum(input.contiguous(), flow.to(input.dtype).contiguous())
    if kernel == "cupy":
        from . import softsplat_cupy
        return softsplat_cupy.splat_sum(input.contiguous(), flow.to(input.dtype).contiguous())
    from . import softsplat
    return softsplat.reference_direct_sum(input, flow)


def _direct_backward(grad_output, input, flow, need_input, need_flow):
    """Full-frame gradients by a kernel without preparation; ``input`` may be None when only ``need_input``."""
    kernel = _direct_kernel(grad_output.device.type)
    module = None
    if kernel == "triton":
        from . import softsplat_triton as module
    elif kernel == "cupy":
        from . import softsplat_cupy as module
        if not hasattr(module, "splat_sum_backward"):
            module = None
    if module is not None:
        if input is None:      # only the shape and dtype are read
            input = torch.empty(grad_output.shape, dtype=grad_output.dtype, device=grad_output.device)
        return module.splat_sum_backward(grad_output.to(input.dtype).contiguous(), input.contiguous(),
                                         flow.to(input.dtype).contiguous(), need_input, need_flow)
    from . import softsplat
    grad_input = softsplat.reference_backward_input(grad_output, flow, 0) if need_input else None
    grad_flow = softsplat.reference_backward_flow(grad_output, input, flow, 0) if need_flow else None
    return grad_input, grad_flow


def _prepare(flow, layout):
    _check_layout(layout)
    if layout == "cells":
        if flow.device.type != "cpu":
            raise RuntimeError(f"splat layout 'cells' (the C++ kernel) needs CPU tensors, got {flow.device.type}")
        if not cpp_available():
            raise RuntimeError("splat layout 'cells' needs the C++ kernel, which could not be built")
        from . import softsplat_cpu
        cell, weight = softsplat_cpu.prepare(flow.contiguous())
        return cell, flow.new_empty(0, dtype=torch.int64), weight
    if layout == "bags":
        from . import softsplat
        return softsplat.reference_prepare_bags(flow)
    empty = flow.new_empty(0)
    return empty.long(), empty.long(), empty


def _apply(input, flow, index, offsets, weight, layout, y0, y1):
    _check_layout(layout)
    fmt = _memory_format(input)
    if layout == "cells":
        from . import softsplat_cpu
        return softsplat_cpu.apply_prepared(input, index, weight.to(input.dtype), y0, y1)
    from . import softsplat
    if layout == "bags":
        output = softsplat.reference_apply_bags(input, index, offsets, weight, y0, y1)
    else:
        output = _direct_sum(input, flow)[:, :, y0:y1]
    return output.contiguous(memory_format=fmt)


def _full_rows(grad_output, height, y0):
    """Output-row gradient of rows y0 .. y0+rows-1 padded with zeros to the full ``height``."""
    rows = grad_output.shape[2]
    if (y0, rows) == (0, height):
        return grad_output
    return F.pad(grad_output, (0, 0, y0, height - y0 - rows))


def _apply_backward_input(grad_output, flow, index, offsets, weight, layout, y0):
    _check_layout(layout)
    h = flow.shape[2]
    fmt = _memory_format(grad_output)
    if layout == "cells":
        from . import softsplat_cpu
        grad = softsplat_cpu.backward_input(grad_output, index, weight.to(grad_output.dtype), h, y0)
    elif layout == "bags":
        from . import softsplat
        grad = softsplat.reference_backward_input(grad_output, flow, y0)
    else:
        grad, _ = _direct_backward(_full_rows(grad_output, h, y0), None, flow, True, False)
    return grad.contiguous(memory_format=fmt)


def _apply_backward_flow(grad_output, input, flow, index, offsets, weight, layout, y0):
    _check_layout(layout)
    if layout == "cells":
        from . import softsplat_cpu
        grad = softsplat_cpu.backward_flow(input, flow.to(input.dtype), grad_output.to(input.dtype), y0)
    elif layout == "bags":
        from . import softsplat
        grad = softsplat.reference_backward_flow(grad_output, input, flow, y0)
    else:
        _, grad = _direct_backward(_full_rows(grad_output, flow.shape[2], y0), input, flow, False, True)
    return grad.to(flow.dtype).contiguous()


def _check_splat_args(input, flow):
    if input.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or input.shape[0] != flow.shape[0] \
            or input.shape[2:] != flow.shape[2:]:
        raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(flow.shape)} do not match")


# --------------------------------------------------------------------------------------------- operators
# Every kernel is registered for all devices (device_types=None); the device-specific choice among variants is
# splat_kernel's, made when the kernel runs (the layout names the variant a prepared flow belongs to).

@custom_op("upr::splat_prepare", mutates_args=())
def splat_prepare(flow: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The flow-only part of a splat in ``layout`` (see the module docstring): (index, offsets, weight)."""
    return _prepare(flow, layout)


@splat_prepare.register_fake
def _(flow, layout):
    _check_layout(layout)
    n, _, h, w = flow.shape
    pixels = n * h * w
    if layout == "cells":
        return (flow.new_empty((pixels, 2), dtype=torch.int32), flow.new_empty(0, dtype=torch.int64),
                flow.new_empty((pixels, 4)))
    if layout == "bags":
        index_type = bag_index_dtype(n, h, w)
        return (flow.new_empty(4 * pixels, dtype=index_type), flow.new_empty(pixels, dtype=index_type),
                flow.new_empty(4 * pixels))
    empty = flow.new_empty(0)
    return empty.long(), empty.long(), empty


@custom_op("upr::splat_apply", mutates_args=())
def splat_apply(input: torch.Tensor, flow: torch.Tensor, index: torch.Tensor, offsets: torch.Tensor,
                weight: torch.Tensor, layout: str, y0: int, y1: int) -> torch.Tensor:
    """Summation splat of ``input`` by a flow prepared with :func:`splat_prepare`: output rows y0 .. y1-1,
    N x C x (y1-y0) x W, channels_last if the input is."""
    return _apply(input, flow, index, offsets, weight, layout, y0, y1)


@splat_apply.register_fake
def _(input, flow, index, offsets, weight, layout, y0, y1):
    n, c, _, w = input.shape
    return _empty_like_format(input, (n, c, y1 - y0, w))


@custom_op("upr::splat_apply_backward_input", mutates_args=())
def splat_apply_backward_input(grad_output: torch.Tensor, flow: torch.Tensor, index: torch.Tensor,
                               offsets: torch.Tensor, weight: torch.Tensor, layout: str, y0: int) -> torch.Tensor:
    """Gradient of :func:`splat_apply` w.r.t. its input: N x C x H x W."""
    return _apply_backward_input(grad_output, flow, index, offsets, weight, layout, y0)


@splat_apply_backward_input.register_fake
def _(grad_output, flow, index, offsets, weight, layout, y0):
    n, c, _, w = grad_output.shape
    return _empty_like_format(grad_output, (n, c, flow.shape[2], w))


@custom_op("upr::splat_apply_backward_flow", mutates_args=())
def splat_apply_backward_flow(grad_output: torch.Tensor, input: torch.Tensor, flow: torch.Tensor,
                              index: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor, layout: str,
                              y0: int) -> torch.Tensor:
    """Gradient of :func:`splat_apply` w.r.t. the flow (the floor held constant): N x 2 x H x W."""
    return _apply_backward_flow(grad_output, input, flow, index, offsets, weight, layout, y0)


@splat_apply_backward_flow.register_fake
def _(grad_output, input, flow, index, offsets, weight, layout, y0):
    return torch.empty_like(flow, memory_format=torch.contiguous_format)


def _apply_setup_context(ctx, inputs, output):
    input, flow, index, offsets, weight, layout, y0, y1 = inputs
    ctx.save_for_backward(input if ctx.needs_input_grad[1] else None, flow, index, offsets, weight)
    ctx.layout, ctx.y0 = layout, y0


def _apply_backward(ctx, grad_output):
    input, flow, index, offsets, weight = ctx.saved_tensors
    grad_input = grad_flow = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.upr.splat_apply_backward_input(grad_output, flow, index, offsets, weight,
                                                              ctx.layout, ctx.y0)
    if ctx.needs_input_grad[1]:
        grad_flow = torch.ops.upr.splat_apply_backward_flow(grad_output, input, flow, index, offsets, weight,
                                                            ctx.layout, ctx.y0)
    return grad_input, grad_flow, None, None, None, None, None, None


splat_apply.register_autograd(_apply_backward, setup_context=_apply_setup_context)


@custom_op("upr::splat_sum", mutates_args=())
def splat_sum(input: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Summation splat of ``input`` (N x C x H x W, float32/float64) by ``flow`` (N x 2 x H x W, pixels, x
    first): N x C x H x W, channels_last if the input is. The device's kernel prepares and applies in one go."""
    _check_splat_args(input, flow)
    layout = splat_layout(input.device.type)
    if layout == "direct":
        return _direct_sum(input, flow).contiguous(memory_format=_memory_format(input))
    index, offsets, weight = _prepare(flow, layout)
    return _apply(input, flow, index, offsets, weight, layout, 0, input.shape[2])


@splat_sum.register_fake
def _(input, flow):
    _check_splat_args(input, flow)
    return _empty_like_format(input, input.shape)


@custom_op("upr::splat_sum_backward_input", mutates_args=())
def splat_sum_backward_input(grad_output: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`splat_sum` w.r.t. its input (the transposed splat, a gather): N x C x H x W."""
    layout = splat_layout(grad_output.device.type)
    if layout == "cells":
        index, offsets, weight = _prepare(flow, layout)
    else:
        index = offsets = weight = flow.new_empty(0)
    return _apply_backward_input(grad_output, flow, index, offsets, weight, layout, 0)


@splat_sum_backward_input.register_fake
def _(grad_output, flow):
    return _empty_like_format(grad_output, grad_output.shape)


@custom_op("upr::splat_sum_backward_flow", mutates_args=())
def splat_sum_backward_flow(grad_output: torch.Tensor, input: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`splat_sum` w.r.t. the flow: N x 2 x H x W in the flow's dtype."""
    layout = splat_layout(grad_output.device.type)
    empty = flow.new_empty(0)
    return _apply_backward_flow(grad_output, input, flow, empty, empty, empty, layout, 0)


@splat_sum_backward_flow.register_fake
def _(grad_output, input, flow):
    return torch.empty_like(flow, memory_format=torch.contiguous_format)


def _sum_setup_context(ctx, inputs, output):
    input, flow = inputs
    ctx.save_for_backward(input if ctx.needs_input_grad[1] else None, flow)


def _sum_backward(ctx, grad_output):
    input, flow = ctx.saved_tensors
    grad_input = grad_flow = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.upr.splat_sum_backward_input(grad_output, flow)
    if ctx.needs_input_grad[1]:
        grad_flow = torch.ops.upr.splat_sum_backward_flow(grad_output, input, flow)
    return grad_input, grad_flow


splat_sum.register_autograd(_sum_backward, setup_context=_sum_setup_context)


@custom_op("upr::correlation", mutates_args=())
def correlation(first: torch.Tensor, second: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """Cost volume N x D^2 x H x W (D = 2 * max_displacement + 1) of two N x C x H x W maps, channels_last (see
    :func:`core.ops.correlation.correlation`)."""
    from .correlation import correlation_forward
    return correlation_forward(first, second, max_displacement).contiguous(memory_format=torch.channels_last)


@correlation.register_fake
def _(first, second, max_displacement):
    n, _, h, w = first.shape
    size = 2 * max_displacement + 1
    return first.new_empty((n, size * size, h, w)).contiguous(memory_format=torch.channels_last)


@custom_op("upr::correlation_backward", mutates_args=())
def correlation_backward(grad_output: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                         max_displacement: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`correlation` w.r.t. both maps, in their memory formats."""
    from .correlation import correlation_backward as backward
    grad_first, grad_second = backward(grad_output, first, second, max_displacement)
    return (grad_first.contiguous(memory_format=_memory_format(first)),
            grad_second.contiguous(memory_format=_memory_format(second)))


@correlation_backward.register_fake
def _(grad_output, first, second, max_displacement):
    return (_empty_like_format(first, first.shape), _empty_like_format(second, second.shape))


def _correlation_setup_context(ctx, inputs, output):
    first, second, max_displacement = inputs
    ctx.save_for_backward(first, second)
    ctx.max_displacement = max_displacement


def _correlation_grad(ctx, grad_output):
    first, second = ctx.saved_tensors
    grad_first, grad_second = torch.ops.upr.correlation_backward(grad_output, first, second, ctx.max_displacement)
    return (grad_first if ctx.needs_input_grad[0] else None, grad_second if ctx.needs_input_grad[1] else None,
            None)


correlation.register_autograd(_correlation_grad, setup_context=_correlation_setup_context)

OPS = ("splat_prepare", "splat_apply", "splat_apply_backward_input", "splat_apply_backward_flow", "splat_sum",
       "splat_sum_backward_input", "splat_sum_backward_flow", "correlation", "correlation_backward")
