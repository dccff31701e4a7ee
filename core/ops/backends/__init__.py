"""Splatting kernel backends, one module each, all implementing :class:`base.Backend` (the protocol is documented
there):

    reference   "torch": pure PyTorch, every device (sorted embedding_bag; scatter_add where embedding_bag is
                missing, and for ONNX export)
    cpp         "cpp": the C++ CPU kernel (``core/ops/csrc/splat_cpu.cpp``)
    triton      "triton": Triton kernels for CUDA tensors (CPU tensors in Triton's interpreter)
    cupy        "cupy": CUDA kernels through CuPy

plus :mod:`.correlation`, the correlation's kernels (not a splatting backend). Backends hold no autograd and know
nothing of the registry (:mod:`core.ops.registry`) or the operators (:mod:`core.ops.operators`) above them.
"""
from .base import Backend, WholeFrame

__all__ = ["Backend", "WholeFrame"]
