"""C++ kernel for summation splatting of CPU tensors, with its gradients (``csrc/splat_cpu.cpp``).

It computes what the pure-PyTorch reference (:mod:`core.ops.softsplat`) computes, with the same corner weights
bit for bit; sums differ only by float rounding (each target adds its contributions in source order instead of
corner by corner). Gradients w.r.t. the input and the flow are those of the reference (the bilinear weights'
derivative with the floor held constant), each output element owned by one thread: deterministic.

The extension is compiled with ``torch.utils.cpp_extension`` on first use (20-60 s; needs a C++ compiler and ninja)
and cached by PyTorch (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). If it cannot be built,
:func:`available` is False, a warning says why, and splatting stays on the reference. The functions here are
the CPU kernels of the ``torch.ops.upr`` splatting operators (:mod:`core.ops.library`), which add autograd.
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


def apply_prepared(input, cell, weight, y0, y1):
    """Summation splat of CPU ``input`` N x C x H x W by prepared cells and weights (:func:`prepare`, weights in
    the input's dtype): output rows y0 .. y1-1, N x C x (y1-y0) x W in the input's memory format. No autograd:
    ``torch.ops.upr.splat_apply`` (:mod:`core.ops.library`) registers the gradients below as its backward."""
    return _extension().apply(input, cell, weight, y0, y1)


def backward_input(grad_output, cell, weight, height, y0):
    """Gradient of :func:`apply_prepared` w.r.t. its input (``height`` rows) from that of output rows y0 ..;
    channels-last memory."""
    return _extension().backward_input(grad_output, cell, weight, height, y0)


def backward_flow(input, flow, grad_output, y0):
    """Gradient of :func:`apply_prepared` w.r.t. the flow (all three in one dtype), the floor held constant."""
    return _extension().backward_flow(input, flow, grad_output, y0)
