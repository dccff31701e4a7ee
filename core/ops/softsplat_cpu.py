"""C++ kernel for summation splatting of CPU tensors, with its gradients (``csrc/splat_cpu.cpp``).

It computes what the pure-PyTorch reference (:mod:`core.ops.softsplat`) computes, with the same corner weights
bit for bit; sums differ only by float rounding (each target adds its contributions in source order instead of
corner by corner). Gradients w.r.t. the input and the flow are those of the reference (the bilinear weights'
derivative with the floor held constant), each output element owned by one thread: deterministic.

The extension is compiled with ``torch.utils.cpp_extension`` on first use (20-60 s; needs a C++ compiler and ninja)
and cached by PyTorch (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). If it cannot be built,
:func:`available` is False, a warning says why, and splatting stays on the reference.
"""
import functools
import logging
import pathlib
import sys
import warnings

import torch

SOURCE = pathlib.Path(__file__).with_name("csrc") / "splat_cpu.cpp"


@functools.lru_cache(maxsize=None)
def _extension():
    # importing cpp_extension warns that a CUDA build of torch finds no CUDA runtime: irrelevant for a CPU kernel
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    name = "upr_splat_cpu"
    build_dir = pathlib.Path(cpp_extension._get_build_directory(name, verbose=False))
    if not any(build_dir.glob(f"{name}*.so")):
        print("Compiling the CPU splatting kernel (first use only, 20-60 s) ...", file=sys.stderr)
    try:
        return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=["-O3", "-fopenmp"],
                                  extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as error:   # no compiler, no ninja, unsupported platform: the reference still works
        warnings.warn(f"the CPU splatting kernel could not be built ({type(error).__name__}: {error}); "
                      "splatting uses the pure-PyTorch reference", RuntimeWarning)
        return None


def available():
    """True if the extension is built (building it now if needed)."""
    return _extension() is not None


def prepare(flow):
    """(cell N*H*W x 2 int32, weight N*H*W x 4) of a CPU flow N x 2 x H x W (float32 or float64, pixels)."""
    return _extension().prepare(flow)


class _SplatSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, flow, cell, weight, y0, y1):
        ctx.save_for_backward(input, flow, cell, weight)
        ctx.y0 = y0
        return _extension().apply(input, cell, weight, y0, y1)

    @staticmethod
    def backward(ctx, grad_output):
        input, flow, cell, weight = ctx.saved_tensors
        grad_input = grad_flow = None
        if ctx.needs_input_grad[0]:
            grad_input = _extension().backward_input(grad_output, cell, weight, input.shape[2], ctx.y0)
        if ctx.needs_input_grad[1]:
            grad_flow = _extension().backward_flow(input, flow.to(input.dtype), grad_output.to(input.dtype),
                                                   ctx.y0).to(flow.dtype)
        return grad_input, grad_flow, None, None, None, None


def apply(input, flow, cell, weight, rows):
    """Summation splat of CPU ``input`` N x C x H x W by ``flow`` N x 2 x H x W (pixels) whose cells and weights
    are prepared (:func:`prepare`); output rows rows[0] .. rows[1]-1, N x C x rows x W, in the input's memory
    format. Differentiable w.r.t. the input and the flow."""
    weight = weight.to(input.dtype)
    if torch.is_grad_enabled() and (input.requires_grad or flow.requires_grad):
        return _SplatSum.apply(input, flow, cell, weight, *rows)
    return _extension().apply(input, cell, weight, *rows)
