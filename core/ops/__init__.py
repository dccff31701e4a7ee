"""Differentiable ops: forward warping (softmax splatting) and the correlation cost volume."""
from .correlation import correlation
from .softsplat import Splatting, get_backend, set_backend, splat, splat_sum

__all__ = ["correlation", "Splatting", "splat", "splat_sum", "set_backend", "get_backend"]
