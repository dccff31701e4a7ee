"""Differentiable ops: forward warping (softmax splatting) and the correlation cost volume.

Both run as PyTorch operators (``torch.ops.upr.*``, registered by :mod:`core.ops.operators` on import) with one
kernel per device, fake implementations for ``torch.compile`` / ``torch.export`` and registered autograd. The
splatting kernels come from backends (:mod:`core.ops.backends`) chosen per device by :mod:`core.ops.registry`."""
from . import operators, registry
from .correlation import correlation
from .registry import get_backend, register_backend, set_backend
from .softsplat import Splatting, splat, splat_sum

__all__ = ["correlation", "operators", "registry", "Splatting", "splat", "splat_sum", "set_backend", "get_backend",
           "register_backend"]
