"""The C++ CPU kernel ("cpp", ``core/ops/csrc/splat_cpu.cpp``): summation splatting of CPU tensors with its
gradients, in the "cells" layout.

It computes what the pure-PyTorch reference (:mod:`core.ops.backends.reference`) computes, with the same corner
weights bit for bit; sums differ only by float rounding (each target adds its contributions in source order instead
of corner by corner). Gradients w.r.t. the input and the flow are those of the reference (the bilinear weights'
derivative with the floor held constant), each output element owned by one thread: deterministic.

Layout "cells": index = top-left target cell (x0, y0) per source pixel, N*H*W x 2 int32; weight = the four corner
weights, N*H*W x 4; offsets empty.

The extension is compiled with ``torch.utils.cpp_extension`` on first use (20-60 s; needs a C++ compiler and ninja)
and cached by PyTorch (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). If it cannot be built,
:meth:`Cpp.available` is False, a warning says why, and splatting stays on the reference.
"""
import functools
import logging
import pathlib
import sys
import warnings

import torch

from .base import Backend

SOURCE = pathlib.Path(__file__).parent.parent / "csrc" / "splat_cpu.cpp"


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


class Cpp(Backend):
    name = "cpp"
    device_types = ("cpu",)
    deterministic = True
    layout = "cells"

    def available(self):
        """True if the extension is built (building it now if needed)."""
        return _extension() is not None

    def why_not(self, device_type):
        if device_type != "cpu":
            return f"the tensor is on {device_type} (the C++ kernel is for CPU tensors)"
        if not self.available():
            return "the C++ kernel could not be built"
        return None

    def prepare(self, flow):
        cell, weight = _extension().prepare(flow.contiguous())
        return cell, flow.new_empty(0, dtype=torch.int64), weight

    def prepared_like(self, flow):
        n, _, h, w = flow.shape
        pixels = n * h * w
        return (flow.new_empty((pixels, 2), dtype=torch.int32), flow.new_empty(0, dtype=torch.int64),
                flow.new_empty((pixels, 4)))

    def apply(self, input, flow, prepared, y0, y1):
        cell, _, weight = prepared
        return _extension().apply(input, cell, weight.to(input.dtype), y0, y1)

    def apply_backward_input(self, grad_output, flow, prepared, y0):
        cell, _, weight = prepared
        return _extension().backward_input(grad_output, cell, weight.to(grad_output.dtype), flow.shape[2], y0)

    def apply_backward_flow(self, grad_output, input, flow, prepared, y0):
        return _extension().backward_flow(input, flow.to(input.dtype), grad_output.to(input.dtype), y0)

    def splat_sum_backward(self, grad_output, input, flow, need_input, need_flow):
        # the flow's gradient needs no preparation
        prepared = self.prepare(flow) if need_input else None
        return (self.apply_backward_input(grad_output, flow, prepared, 0) if need_input else None,
                self.apply_backward_flow(grad_output, input, flow, prepared, 0) if need_flow else None)


BACKEND = Cpp()
