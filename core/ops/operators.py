"""Splatting and correlation as PyTorch operators (``torch.ops.upr.*``), one kernel per device.

The operators (schemas in :data:`OPS`; every one has a fake implementation, so ``torch.compile`` and
``torch.export`` trace through them, and the differentiable ones have ONE registered autograd formula each, whose
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
(the model splats an image, a feature map and a normaliser per flow). ``layout`` names what the prepared tensors
hold, and so the backend they belong to (:func:`core.ops.registry.layout_for` picks it for a device):

    "cells"   the C++ CPU kernel (:mod:`core.ops.backends.cpp`)
    "bags"    the pure-PyTorch reference's sorted embedding_bag (:mod:`core.ops.backends.reference`)
    "direct"  no preparation (Triton, CuPy; the reference on MPS): all three tensors are empty and ``splat_apply``
              splats the whole frame with the device's backend.

The splatting kernels are registered with the dispatcher per device type ("cpu", "cuda", and the operator's
default for every other device); each asks the registry (:mod:`core.ops.registry`) for its device's backend. The
correlation has one kernel (block matrix products, :mod:`core.ops.backends.correlation`) for every device.
"""
import functools

import torch
import torch.nn.functional as F
from torch.library import custom_op

from . import registry
from .backends import correlation as correlation_kernels
from .backends.base import empty_like_format, memory_format

DEVICE_TYPES = ("cpu", "cuda")
"""Device types with their own registered kernels; the operators' defaults serve the others."""


def _per_device(op):
    """Register ``kernel(device_type, *args)`` as ``op``'s kernel for each of :data:`DEVICE_TYPES`, the device type
    bound (the dispatcher picks the kernel by the tensors' device; the default reads it off the first tensor)."""
    def register(kernel):
        for device_type in DEVICE_TYPES:
            op.register_kernel(device_type)(functools.partial(kernel, device_type))
        return kernel
    return register


def _prepared_backend(layout, device_type):
    backend = registry.layout_backend(layout)
    reason = backend.why_not(device_type)
    if reason is not None:
        raise RuntimeError(f"splat layout {layout!r} belongs to splatting backend {backend.name!r}, which cannot "
                           f"serve this flow: {reason}")
    return backend


def _full_rows(grad_output, height, y0):
    """Output-row gradient of rows y0 .. y0+rows-1 padded with zeros to the full ``height``."""
    rows = grad_output.shape[2]
    if (y0, rows) == (0, height):
        return grad_output
    return F.pad(grad_output, (0, 0, y0, height - y0 - rows))


def _check_splat_args(input, flow):
    if input.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or input.shape[0] != flow.shape[0] \
            or input.shape[2:] != flow.shape[2:]:
        raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(flow.shape)} do not match")


# ----------------------------------------------------------------------------------- prepare and apply

@custom_op("upr::splat_prepare", mutates_args=())
def splat_prepare(flow: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The flow-only part of a splat in ``layout`` (see the module docstring): (index, offsets, weight)."""
    return _prepare(flow.device.type, flow, layout)


@_per_device(splat_prepare)
def _prepare(device_type, flow, layout):
    if layout == registry.DIRECT:
        empty = flow.new_empty(0)
        return empty.long(), empty.long(), empty
    return _prepared_backend(layout, device_type).prepare(flow)


@splat_prepare.register_fake
def _(flow, layout):
    if layout == registry.DIRECT:
        empty = flow.new_empty(0)
        return empty.long(), empty.long(), empty
    return registry.layout_backend(layout).prepared_like(flow)


@custom_op("upr::splat_apply", mutates_args=())
def splat_apply(input: torch.Tensor, flow: torch.Tensor, index: torch.Tensor, offsets: torch.Tensor,
                weight: torch.Tensor, layout: str, y0: int, y1: int) -> torch.Tensor:
    """Summation splat of ``input`` by a flow prepared with :func:`splat_prepare`: output rows y0 .. y1-1,
    N x C x (y1-y0) x W, channels_last if the input is."""
    return _apply(input.device.type, input, flow, index, offsets, weight, layout, y0, y1)


@_per_device(splat_apply)
def _apply(device_type, input, flow, index, offsets, weight, layout, y0, y1):
    if layout == registry.DIRECT:
        output = registry.backend_for(device_type).splat_sum(input, flow)[:, :, y0:y1]
        return output.contiguous(memory_format=memory_format(input))
    # the backend returns the input's memory format (the protocol): nothing more on the path every splat takes
    return registry.layout_backend(layout).apply(input, flow, (index, offsets, weight), y0, y1)


@splat_apply.register_fake
def _(input, flow, index, offsets, weight, layout, y0, y1):
    n, c, _, w = input.shape
    return empty_like_format(input, (n, c, y1 - y0, w))


@custom_op("upr::splat_apply_backward_input", mutates_args=())
def splat_apply_backward_input(grad_output: torch.Tensor, flow: torch.Tensor, index: torch.Tensor,
                               offsets: torch.Tensor, weight: torch.Tensor, layout: str, y0: int) -> torch.Tensor:
    """Gradient of :func:`splat_apply` w.r.t. its input: N x C x H x W."""
    return _apply_backward_input(grad_output.device.type, grad_output, flow, index, offsets, weight, layout, y0)


@_per_device(splat_apply_backward_input)
def _apply_backward_input(device_type, grad_output, flow, index, offsets, weight, layout, y0):
    if layout == registry.DIRECT:
        grad, _ = registry.backend_for(device_type).splat_sum_backward(
            _full_rows(grad_output, flow.shape[2], y0), None, flow, True, False)
    else:
        grad = registry.layout_backend(layout).apply_backward_input(grad_output, flow, (index, offsets, weight), y0)
    return grad.contiguous(memory_format=memory_format(grad_output))


@splat_apply_backward_input.register_fake
def _(grad_output, flow, index, offsets, weight, layout, y0):
    n, c, _, w = grad_output.shape
    return empty_like_format(grad_output, (n, c, flow.shape[2], w))


@custom_op("upr::splat_apply_backward_flow", mutates_args=())
def splat_apply_backward_flow(grad_output: torch.Tensor, input: torch.Tensor, flow: torch.Tensor,
                              index: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor, layout: str,
                              y0: int) -> torch.Tensor:
    """Gradient of :func:`splat_apply` w.r.t. the flow (the floor held constant): N x 2 x H x W."""
    return _apply_backward_flow(grad_output.device.type, grad_output, input, flow, index, offsets, weight, layout,
                                y0)


@_per_device(splat_apply_backward_flow)
def _apply_backward_flow(device_type, grad_output, input, flow, index, offsets, weight, layout, y0):
    if layout == registry.DIRECT:
        _, grad = registry.backend_for(device_type).splat_sum_backward(
            _full_rows(grad_output, flow.shape[2], y0), input, flow, False, True)
    else:
        grad = registry.layout_backend(layout).apply_backward_flow(grad_output, input, flow,
                                                                   (index, offsets, weight), y0)
    return grad.to(flow.dtype).contiguous()


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


# ------------------------------------------------------------------------------------- whole-frame splat

@custom_op("upr::splat_sum", mutates_args=())
def splat_sum(input: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Summation splat of ``input`` (N x C x H x W, float32/float64) by ``flow`` (N x 2 x H x W, pixels, x
    first): N x C x H x W, channels_last if the input is. The device's backend splats in one go."""
    return _sum(input.device.type, input, flow)


@_per_device(splat_sum)
def _sum(device_type, input, flow):
    _check_splat_args(input, flow)
    return registry.backend_for(device_type).splat_sum(input, flow)


@splat_sum.register_fake
def _(input, flow):
    _check_splat_args(input, flow)
    return empty_like_format(input, input.shape)


@custom_op("upr::splat_sum_backward_input", mutates_args=())
def splat_sum_backward_input(grad_output: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`splat_sum` w.r.t. its input (the transposed splat, a gather): N x C x H x W."""
    return _sum_backward_input(grad_output.device.type, grad_output, flow)


@_per_device(splat_sum_backward_input)
def _sum_backward_input(device_type, grad_output, flow):
    grad, _ = registry.backend_for(device_type).splat_sum_backward(grad_output, None, flow, True, False)
    return grad.contiguous(memory_format=memory_format(grad_output))


@splat_sum_backward_input.register_fake
def _(grad_output, flow):
    return empty_like_format(grad_output, grad_output.shape)


@custom_op("upr::splat_sum_backward_flow", mutates_args=())
def splat_sum_backward_flow(grad_output: torch.Tensor, input: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`splat_sum` w.r.t. the flow: N x 2 x H x W in the flow's dtype."""
    return _sum_backward_flow(grad_output.device.type, grad_output, input, flow)


@_per_device(splat_sum_backward_flow)
def _sum_backward_flow(device_type, grad_output, input, flow):
    _, grad = registry.backend_for(device_type).splat_sum_backward(grad_output, input, flow, False, True)
    return grad.to(flow.dtype).contiguous()


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


# ------------------------------------------------------------------------------------------- correlation

@custom_op("upr::correlation", mutates_args=())
def correlation(first: torch.Tensor, second: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """Cost volume N x D^2 x H x W (D = 2 * max_displacement + 1) of two N x C x H x W maps, channels_last (see
    :func:`core.ops.correlation.correlation`)."""
    return correlation_kernels.forward(first, second, max_displacement).contiguous(memory_format=torch.channels_last)


@correlation.register_fake
def _(first, second, max_displacement):
    n, _, h, w = first.shape
    size = 2 * max_displacement + 1
    return first.new_empty((n, size * size, h, w)).contiguous(memory_format=torch.channels_last)


@custom_op("upr::correlation_backward", mutates_args=())
def correlation_backward(grad_output: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                         max_displacement: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`correlation` w.r.t. both maps, in their memory formats."""
    grad_first, grad_second = correlation_kernels.backward(grad_output, first, second, max_displacement)
    return (grad_first.contiguous(memory_format=memory_format(first)),
            grad_second.contiguous(memory_format=memory_format(second)))


@correlation_backward.register_fake
def _(grad_output, first, second, max_displacement):
    return (empty_like_format(first, first.shape), empty_like_format(second, second.shape))


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
