"""CUDA kernels ("cupy") for summation splatting, launched through CuPy; no preparation (the "direct" layout).

The kernels implement exactly the semantics of the pure-PyTorch reference (:mod:`core.ops.backends.reference`):
each source pixel is added to the four integer neighbours of (x + flow_x, y + flow_y) with bilinear weights,
off-frame neighbours are dropped; the flow gradient is the derivative of the bilinear weights with the
floor held constant. ``kernel_source(dtype)`` returns the CUDA C++ source (compile-checked with nvcc by the
tests, and run on the CPU through ``csrc/cuda_cpu_shim.h``); CuPy itself is imported only when a CUDA tensor is
splatted. The forward adds with atomics (not deterministic); both gradients gather.
"""
import functools

import torch

from .base import WholeFrame

_COMMON = r"""
#define TYPE {dtype}
__device__ __forceinline__ TYPE clamp_cell(TYPE v, int size) {{
    return v < (TYPE)-2 ? (TYPE)-2 : (v > (TYPE)(size + 1) ? (TYPE)(size + 1) : v);
}}
__device__ __forceinline__ void corners(TYPE fx, TYPE fy, int x, int y, int W, int H, int* cx, int* cy, TYPE* w,
                                        TYPE* dwdx, TYPE* dwdy) {{
    TYPE tx = (TYPE)x + fx, ty = (TYPE)y + fy;
    TYPE x0 = floor(tx), y0 = floor(ty);
    TYPE ax = tx - x0, ay = ty - y0;
    // clamped to [-2, size + 1] before the cast (out of range it is undefined in C++, saturating in CUDA):
    // a clamped cell has no corner on the frame
    int ix = (int)clamp_cell(x0, W), iy = (int)clamp_cell(y0, H);
    cx[0] = ix;     cy[0] = iy;     w[0] = (1 - ax) * (1 - ay); dwdx[0] = -(1 - ay); dwdy[0] = -(1 - ax);
    cx[1] = ix + 1; cy[1] = iy;     w[1] = ax * (1 - ay);       dwdx[1] = (1 - ay);  dwdy[1] = -ax;
    cx[2] = ix;     cy[2] = iy + 1; w[2] = (1 - ax) * ay;       dwdx[2] = -ay;       dwdy[2] = (1 - ax);
    cx[3] = ix + 1; cy[3] = iy + 1; w[3] = ax * ay;             dwdx[3] = ay;        dwdy[3] = ax;
}}
"""

_FORWARD = r"""
extern "C" __global__ void splat_forward(const long long total, const int C, const int H, const int W,
                                         const TYPE* __restrict__ input, const TYPE* __restrict__ flow,
                                         TYPE* __restrict__ output) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {{
        const int x = i % W, y = (i / W) % H, c = (i / ((long long)W * H)) % C;
        const long long n = i / ((long long)W * H * C);
        const TYPE fx = flow[((n * 2 + 0) * H + y) * W + x], fy = flow[((n * 2 + 1) * H + y) * W + x];
        if (!isfinite(fx) || !isfinite(fy)) continue;
        int cx[4], cy[4]; TYPE w[4], dwdx[4], dwdy[4];
        corners(fx, fy, x, y, W, H, cx, cy, w, dwdx, dwdy);
        const TYPE value = input[i];
        for (int k = 0; k < 4; ++k) {{
            if (cx[k] >= 0 && cx[k] < W && cy[k] >= 0 && cy[k] < H) {{
                atomicAdd(&output[((n * C + c) * H + cy[k]) * W + cx[k]], value * w[k]);
            }}
        }}
    }}
}}
"""

_BACKWARD_INPUT = r"""
extern "C" __global__ void splat_backward_input(const long long total, const int C, const int H, const int W,
                                                const TYPE* __restrict__ flow, const TYPE* __restrict__ grad_output,
                                                TYPE* __restrict__ grad_input) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {{
        const int x = i % W, y = (i / W) % H, c = (i / ((long long)W * H)) % C;
        const long long n = i / ((long long)W * H * C);
        const TYPE fx = flow[((n * 2 + 0) * H + y) * W + x], fy = flow[((n * 2 + 1) * H + y) * W + x];
        TYPE sum = 0;
        if (isfinite(fx) && isfinite(fy)) {{
            int cx[4], cy[4]; TYPE w[4], dwdx[4], dwdy[4];
            corners(fx, fy, x, y, W, H, cx, cy, w, dwdx, dwdy);
            for (int k = 0; k < 4; ++k) {{
                if (cx[k] >= 0 && cx[k] < W && cy[k] >= 0 && cy[k] < H) {{
                    sum += w[k] * grad_output[((n * C + c) * H + cy[k]) * W + cx[k]];
                }}
            }}
        }}
        grad_input[i] = sum;
    }}
}}
"""

_BACKWARD_FLOW = r"""
extern "C" __global__ void splat_backward_flow(const long long total, const int C, const int H, const int W,
                                               const TYPE* __restrict__ input, const TYPE* __restrict__ flow,
                                               const TYPE* __restrict__ grad_output, TYPE* __restrict__ grad_flow) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {{
        const int x = i % W, y = (i / W) % H;
        const long long n = i / ((long long)W * H);
        const TYPE fx = flow[((n * 2 + 0) * H + y) * W + x], fy = flow[((n * 2 + 1) * H + y) * W + x];
        TYPE gx = 0, gy = 0;
        if (isfinite(fx) && isfinite(fy)) {{
            int cx[4], cy[4]; TYPE w[4], dwdx[4], dwdy[4];
            corners(fx, fy, x, y, W, H, cx, cy, w, dwdx, dwdy);
            for (int k = 0; k < 4; ++k) {{
                if (cx[k] < 0 || cx[k] >= W || cy[k] < 0 || cy[k] >= H) continue;
                TYPE dot = 0;
                for (int c = 0; c < C; ++c) {{
                    dot += input[((n * C + c) * H + y) * W + x] * grad_output[((n * C + c) * H + cy[k]) * W + cx[k]];
                }}
                gx += dwdx[k] * dot;
                gy += dwdy[k] * dot;
            }}
        }}
        grad_flow[((n * 2 + 0) * H + y) * W + x] = gx;
        grad_flow[((n * 2 + 1) * H + y) * W + x] = gy;
    }}
}}
"""

_C_TYPES = {torch.float32: "float", torch.float64: "double"}


KERNEL_NAMES = ("splat_forward", "splat_backward_input", "splat_backward_flow")


def kernel_source(dtype="float"):
    """The CUDA source of the three kernels (:data:`KERNEL_NAMES`, extern "C") for a C type ("float" or
    "double"). With ``csrc/cuda_cpu_shim.h`` included first it also compiles as C++ for the CPU (one block of
    one thread runs each grid-stride loop sequentially): the tests run it that way."""
    return (_COMMON + _FORWARD + _BACKWARD_INPUT + _BACKWARD_FLOW).format(dtype=dtype)


@functools.lru_cache(maxsize=None)
def available():
    try:
        import cupy  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


@functools.lru_cache(maxsize=None)
def _kernels(c_type):
    import cupy
    module = cupy.RawModule(code=kernel_source(c_type))
    return {name: module.get_function(name) for name in
            ("splat_forward", "splat_backward_input", "splat_backward_flow")}


def _launch(name, total, sizes, tensors):
    """Run kernel ``name`` over ``total`` items with int sizes (C, H, W) and contiguous CUDA tensors."""
    import cupy
    kernel = _kernels(_C_TYPES[tensors[0].dtype])[name]
    threads = 512
    blocks = max(1, min((total + threads - 1) // threads, 65535 * 8))
    arrays = [cupy.asarray(t.detach()) for t in tensors]   # zero-copy views; detach: autograd-tracked inputs refuse one
    with cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
        kernel((blocks,), (threads,), (cupy.int64(total), *[cupy.int32(v) for v in sizes], *arrays))


def splat_sum_backward(grad_output, input, flow, need_input=True, need_flow=True):
    """Gradients of ``(splat_sum(input, flow) * grad_output).sum()`` w.r.t. the input and the flow, each None
    where not asked for (the interface of :func:`core.ops.backends.triton.splat_sum_backward`). CUDA tensors,
    float32 or float64; the flow is cast to the input's dtype. Both gather: deterministic."""
    input, flow = input.contiguous(), flow.to(input.dtype).contiguous()
    grad_output = grad_output.to(input.dtype).contiguous()
    n, c, h, w = input.shape
    grad_input = grad_flow = None
    if need_input:
        grad_input = torch.empty_like(input)
        _launch("splat_backward_input", input.numel(), (c, h, w), (flow, grad_output, grad_input))
    if need_flow:
        grad_flow = torch.empty_like(flow)
        _launch("splat_backward_flow", n * h * w, (c, h, w), (input, flow, grad_output, grad_flow))
    return grad_input, grad_flow


def splat_sum(input, flow):
    """Summation splat of a CUDA ``input`` (N x C x H x W, float32 or float64) by ``flow`` (N x 2 x H x W, cast to
    the input's dtype): N x C x H x W, contiguous. No autograd (the operators in :mod:`core.ops.operators` add it)."""
    input, flow = input.contiguous(), flow.to(input.dtype).contiguous()
    n, c, h, w = input.shape
    output = torch.zeros_like(input)
    _launch("splat_forward", input.numel(), (c, h, w), (input, flow, output))
    return output


class CuPy(WholeFrame):
    name = "cupy"
    device_types = ("cuda",)
    deterministic = False

    def available(self):
        return available()

    def why_not(self, device_type):
        if device_type != "cuda":
            return f"the tensor is not on a CUDA device ({device_type})"
        if not available():
            return "cannot splat CUDA tensors (CuPy is not importable)"
        return None


BACKEND = CuPy(splat_sum, splat_sum_backward)
