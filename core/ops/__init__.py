"""Differentiable ops: forward warping (softmax splatting) and the correlation cost volume.

Both run as PyTorch operators (``torch.ops.upr.*``, registered by :mod:`core.ops.library` on import) with one
kernel per device, fake implementations for ``torch.compile`` / ``torch.export`` and registered autograd."""
from . import library
from .correlation import correlation
from .softsplat import Splatting, get_backend, set_backend, splat, splat_sum

__all__ = ["correlation", "library", "Splatting", "splat", "splat_sum", "set_backend", "get_backend"]
