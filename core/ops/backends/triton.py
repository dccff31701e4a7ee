"""Triton kernels ("triton") for summation splatting of CUDA tensors, with both gradients; no preparation (the
"direct" layout).

The semantics are those of the reference (:mod:`core.ops.backends.reference`) and of the CuPy kernels
(:mod:`core.ops.backends.cupy`): every source pixel (x, y) of ``input`` is added to the four integer neighbours
of (x + flow_x, y + flow_y) with bilinear weights; neighbours off the frame are dropped one by one; a pixel whose
flow is not finite splats nothing; the flow gradient is the derivative of the bilinear weights with the floor
held constant. The corner weights are computed with the same operations as the reference, so they agree bit for
bit; sums differ by float rounding only.

    available()                                  triton importable and usable (CUDA present, or the interpreter)
    splat_sum(input, flow)                       -> output (N x C x H x W)
    splat_sum_backward(grad_output, input, flow, need_input=True, need_flow=True)
                                                 -> (grad_input or None, grad_flow or None)
    BACKEND                                      the two as a backend (:class:`core.ops.backends.base.Backend`)

``input`` is N x C x H x W, ``flow`` N x 2 x H x W (pixels, x first), float32 or float64 (the flow is cast to the
input's dtype); non-contiguous tensors are made contiguous. One program handles a block of source pixels and
loops over the channels. Offsets are int32 when every offset of the call fits, int64 otherwise
(``index64=True`` forces the int64 path, for tests).

Determinism: the forward adds with atomics, so on a GPU its float summation order (and the last bits of the
result) can differ from run to run; the backward gathers (each output element written by one program) and is
deterministic. The backend is therefore not ``deterministic``: under ``torch.use_deterministic_algorithms(True)``
the registry chooses another.

The kernels are plain ``@triton.jit`` functions decorated when this module is first imported. With
``TRITON_INTERPRET=1`` set before that import, Triton's interpreter runs them on CPU tensors (slowly): that is
how the test suite checks them on machines without a GPU (a forced "triton" backend then serves CPU tensors).
"""
import contextlib
import functools
import os

import torch

from .base import WholeFrame

try:
    import triton
    import triton.language as tl
except Exception:                 # not installed, or broken: available() is False and nothing below is defined
    triton = None

_DTYPES = (torch.float32, torch.float64)
INT32_LIMIT = 2 ** 31 - 1
BLOCK = 512
"""Source pixels per program."""


def interpreted():
    """Whether Triton runs kernels in its interpreter (TRITON_INTERPRET=1 when this module was imported)."""
    return _INTERPRET


_INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=None)
def available():
    """True if the kernels can run: Triton imports and either a CUDA device is present or the interpreter is on."""
    if triton is None:
        return False
    return _INTERPRET or torch.cuda.is_available()


if triton is not None:
    @triton.jit
    def _corners(flow_ptr, start, pixels, H, W, BLOCK: tl.constexpr):
        """Source pixel indices p of this block, their mask, input offset of channel 0, and per corner
        (top-left, top-right, bottom-left, bottom-right) the output offset of channel 0, the in-frame mask, the
        weight and its derivatives by flow x and flow y."""
        p = start + tl.arange(0, BLOCK)
        valid = p < pixels
        hw = H * W
        x = p % W
        y = (p // W) % H
        n = p // hw
        flow_offset = n * 2 * hw + y * W + x
        fx = tl.load(flow_ptr + flow_offset, mask=valid, other=0.0)
        fy = tl.load(flow_ptr + flow_offset + hw, mask=valid, other=0.0)
        finite = (tl.abs(fx) < float("inf")) & (tl.abs(fy) < float("inf"))
        # a non-finite target becomes -2, as in the reference: both of its axis' neighbours are off the frame
        tx = tl.where(finite, x.to(fx.dtype) + fx, -2.0)
        ty = tl.where(finite, y.to(fy.dtype) + fy, -2.0)
        x0 = tl.floor(tx)
        y0 = tl.floor(ty)
        ax = tx - x0
        ay = ty - y0
        # clamped before the cast so that huge flows cannot overflow; a clamped cell has no corner on the frame
        ix = tl.minimum(tl.maximum(x0, -2.0), W + 1.0).to(tl.int32)
        iy = tl.minimum(tl.maximum(y0, -2.0), H + 1.0).to(tl.int32)
        left = valid & (ix >= 0) & (ix < W)
        right = valid & (ix >= -1) & (ix < W - 1)
        top = (iy >= 0) & (iy < H)
        bottom = (iy >= -1) & (iy < H - 1)
        in_offset = y * W + x                       # + (n * C + c) * hw, added by the caller
        out_offset = iy * W + ix                    # + (n * C + c) * hw
        return (valid, n, in_offset, out_offset, left & top, right & top, left & bottom, right & bottom,
                (1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay, ax, ay)

    @triton.jit
    def _splat_forward(input_ptr, flow_ptr, output_ptr, pixels, C, H, W,
                       BLOCK: tl.constexpr, INDEX64: tl.constexpr):
        pid = tl.program_id(0)
        if INDEX64:
            start = pid.to(tl.int64) * BLOCK
        else:
            start = pid * BLOCK
        (valid, n, in_offset, out_offset, m00, m01, m10, m11,
         w00, w01, w10, w11, ax, ay) = _corners(flow_ptr, start, pixels, H, W, BLOCK)
        hw = H * W
        plane = n * C * hw                          # int64 where n is
        for c in range(C):
            value = tl.load(input_ptr + plane + in_offset, mask=valid, other=0.0)
            target = output_ptr + plane + out_offset
            tl.atomic_add(target, value * w00, mask=m00)
            tl.atomic_add(target + 1, value * w01, mask=m01)
            tl.atomic_add(target + W, value * w10, mask=m10)
            tl.atomic_add(target + W + 1, value * w11, mask=m11)
            plane += hw

    @triton.jit
    def _splat_backward(grad_output_ptr, input_ptr, flow_ptr, grad_input_ptr, grad_flow_ptr, pixels, C, H, W,
                        BLOCK: tl.constexpr, INDEX64: tl.constexpr, NEED_INPUT: tl.constexpr,
                        NEED_FLOW: tl.constexpr):
        pid = tl.program_id(0)
        if INDEX64:
            start = pid.to(tl.int64) * BLOCK
        else:
            start = pid * BLOCK
        (valid, n, in_offset, out_offset, m00, m01, m10, m11,
         w00, w01, w10, w11, ax, ay) = _corners(flow_ptr, start, pixels, H, W, BLOCK)
        hw = H * W
        plane = n * C * hw
        # per corner, the dot product over channels of the input and the output gradient there
        dot00 = tl.zeros_like(w00)
        dot01 = tl.zeros_like(w00)
        dot10 = tl.zeros_like(w00)
        dot11 = tl.zeros_like(w00)
        for c in range(C):
            target = grad_output_ptr + plane + out_offset
            g00 = tl.load(target, mask=m00, other=0.0)
            g01 = tl.load(target + 1, mask=m01, other=0.0)
            g10 = tl.load(target + W, mask=m10, other=0.0)
            g11 = tl.load(target + W + 1, mask=m11, other=0.0)
            if NEED_INPUT:
                # corners off the frame loaded 0; an in-frame corner's weight is finite
                tl.store(grad_input_ptr + plane + in_offset, w00 * g00 + w01 * g01 + w10 * g10 + w11 * g11,
                         mask=valid)
            if NEED_FLOW:
                value = tl.load(input_ptr + plane + in_offset, mask=valid, other=0.0)
                dot00 += value * g00
                dot01 += value * g01
                dot10 += value * g10
                dot11 += value * g11
            plane += hw
        if NEED_FLOW:
            # d weight / d flow_x and / d flow_y of the four corners, the floor held constant
            gx = -(1 - ay) * dot00 + (1 - ay) * dot01 - ay * dot10 + ay * dot11
            gy = -(1 - ax) * dot00 - ax * dot01 + (1 - ax) * dot10 + ax * dot11
            flow_offset = n * 2 * hw + in_offset
            tl.store(grad_flow_ptr + flow_offset, gx, mask=valid)
            tl.store(grad_flow_ptr + flow_offset + hw, gy, mask=valid)


def _check(input, flow):
    if input.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[0] != input.shape[0] \
            or flow.shape[2:] != input.shape[2:]:
        raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(flow.shape)} do not match "
                         "(N x C x H x W and N x 2 x H x W)")
    if input.dtype not in _DTYPES:
        raise TypeError(f"splat: the Triton kernels take float32 or float64, got {input.dtype}")
    if not available():
        raise RuntimeError("splat: the Triton kernels are not available (no triton, or no CUDA device)")
    if input.device != flow.device:
        raise ValueError(f"splat: input on {input.device}, flow on {flow.device}")
    if input.is_cuda == _INTERPRET:
        where = "CPU tensors (the interpreter is on)" if _INTERPRET else "CUDA tensors"
        raise ValueError(f"splat: the Triton kernels here take {where}, got a tensor on {input.device}")
    return input.contiguous(), flow.to(input.dtype).contiguous()


def _use_int64(input, flow, index64):
    if index64 is not None:
        return bool(index64)
    n, c, h, w = input.shape
    # the largest offset formed, masked or not: the last element plus a corner row below the frame
    return max(input.numel(), flow.numel()) + 4 * (w + 2) >= INT32_LIMIT


def _launch(kernel, input, *args, **constants):
    n, c, h, w = input.shape
    pixels = n * h * w
    grid = (triton.cdiv(pixels, BLOCK),)
    with torch.cuda.device(input.device) if input.is_cuda else contextlib.nullcontext():
        kernel[grid](*args, pixels, c, h, w, BLOCK=BLOCK, num_warps=4, **constants)


def splat_sum(input, flow, *, index64=None):
    """Summation splat of ``input`` (N x C x H x W) by ``flow`` (N x 2 x H x W, pixels): N x C x H x W in the
    input's dtype. No autograd (the operators in :mod:`core.ops.operators` add it)."""
    input, flow = _check(input, flow)
    output = torch.zeros_like(input, memory_format=torch.contiguous_format)
    if input.numel():
        _launch(_splat_forward, input, input, flow, output, INDEX64=_use_int64(input, flow, index64))
    return output


def splat_sum_backward(grad_output, input, flow, need_input=True, need_flow=True, *, index64=None):
    """Gradients of ``(splat_sum(input, flow) * grad_output).sum()``: (w.r.t. input, w.r.t. flow); each None
    where not asked for. The flow gradient has the flow's shape and the input's dtype."""
    if not (need_input or need_flow):
        return None, None
    input, flow = _check(input, flow)
    if grad_output.shape != input.shape:
        raise ValueError(f"splat: grad_output {tuple(grad_output.shape)} does not match input {tuple(input.shape)}")
    grad_output = grad_output.to(input.dtype).contiguous()
    grad_input = torch.empty_like(input, memory_format=torch.contiguous_format) if need_input else None
    grad_flow = torch.empty_like(flow, memory_format=torch.contiguous_format) if need_flow else None
    if input.shape[1] == 0 or not input.numel():
        return (None if grad_input is None else grad_input.zero_()), (None if grad_flow is None else grad_flow.zero_())
    # an output that is not asked for is never written: any tensor serves as its pointer
    _launch(_splat_backward, input, grad_output, input, flow,
            grad_input if need_input else grad_output, grad_flow if need_flow else flow,
            INDEX64=_use_int64(input, flow, index64), NEED_INPUT=need_input, NEED_FLOW=need_flow)
    return grad_input, grad_flow


class Triton(WholeFrame):
    name = "triton"
    device_types = ("cuda",)
    deterministic = False

    def available(self):
        return available()

    def why_not(self, device_type):
        if device_type == "cuda":
            if not available():
                return "cannot splat CUDA tensors (triton is not importable)"
            if _INTERPRET:
                return "cannot splat CUDA tensors (TRITON_INTERPRET=1 runs the kernels on CPU tensors)"
            return None
        if device_type == "cpu":
            if _INTERPRET and available():
                return None
            return ("the tensor is on the CPU (Triton runs CPU tensors only in its interpreter: "
                    "TRITON_INTERPRET=1)")
        return f"the tensor is on {device_type}"


BACKEND = Triton(splat_sum, splat_sum_backward)
