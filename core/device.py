"""Device selection shared by the tools, and the CPU allocator setting."""
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
