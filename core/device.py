"""Device selection and the CPU memory policy, shared by every entry point (tools, Interpolator,
``UPRNet.prepare_for_inference``).

The memory policy has two parts, both decided here and applied only by entry points, never by a forward pass:
the tensor layout (:func:`default_memory_format`: channels_last on the CPU, where oneDNN convolutions are faster
with it) and glibc's allocator (:func:`apply_allocator_policy`: keep freed memory for frames up to
:data:`KEEP_MEMORY_PIXELS`).
"""
import functools

import torch


def resolve_device(device="auto"):
    """"auto" -> cuda if available, else mps, else cpu; anything else is passed to torch.device."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but CUDA is not available on this machine")
    return device


KEEP_MEMORY_PIXELS = 1280 * 768
"""Inference on padded frames of at most this many pixels (720p) on the CPU makes malloc keep freed memory for
reuse (:func:`keep_freed_memory`; measurements in docs/performance.md). Larger frames leave the allocator alone,
because keeping freed memory raises their peak."""


def default_memory_format(device):
    """The memory format that models and inputs use on ``device`` unless told otherwise: channels_last on the CPU,
    contiguous elsewhere."""
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def apply_allocator_policy(device, frame_pixels=None):
    """For inference on ``device``: keep freed memory (:func:`keep_freed_memory`) when it is the CPU and the
    frames (``frame_pixels``, padded height x width; None: at most :data:`KEEP_MEMORY_PIXELS`) are small enough.
    Process-wide and permanent once applied; for entry points only. Returns whether it is applied."""
    if torch.device(device).type != "cpu":
        return False
    if frame_pixels is not None and frame_pixels > KEEP_MEMORY_PIXELS:
        return False
    return keep_freed_memory()


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4        # mallopt parameters (glibc malloc.h)


@functools.lru_cache(maxsize=None)
def keep_freed_memory():
    """Make glibc's malloc serve every allocation from its heap and keep freed memory there for reuse.

    By default glibc maps each block above 32 MB (most activations at training and video sizes) freshly from
    the kernel and returns it on free, so every such tensor pays a page fault per 4 KB page on first touch. On
    the 2-core CPU of the README a base training step (batch 8, 256x256, fp32 channels_last) then takes 5.1 s
    instead of 3.8 s (``python -m tools.training_speed --allocator default|keep``), and interpolating 640x480
    takes 0.82-0.86 s instead of 0.61 s. This sets M_MMAP_MAX = 0, no trimming and a 64 MiB heap growth step.
    Results are bit-identical; the process keeps its peak heap instead of shrinking, and fragmentation raises
    the peak (base at 1080p: 5.7 GB instead of 4.2 GB), so :class:`core.Interpolator` applies it only to
    small frames. Process-wide and permanent; applied once. A no-op without glibc (macOS, Windows, musl) or
    when UPR_KEEP_FREED_MEMORY=0. Returns whether it was applied.
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("UPR_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # never map, never trim (-1 reads as the largest size_t), grow the heap in steps of 64 MiB
    return all(mallopt(parameter, value) for parameter, value in
               ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1), (_M_TOP_PAD, 64 << 20)))
