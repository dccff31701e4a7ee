"""Local correlation (cost volume) between two feature maps, max displacement 4, stride 1."""
import torch

from . import export_friendly
from . import operators  # noqa: F401  (registers torch.ops.upr.correlation)
from .backends import correlation as kernels

MAX_DISPLACEMENT = 4


def correlation(first, second, max_displacement=MAX_DISPLACEMENT):
    """Cost volume of ``first`` against shifted ``second``.

    first, second: N x C x H x W. Returns N x D^2 x H x W with D = 2 * max_displacement + 1, where
    out[n, (dy + d) * D + (dx + d), y, x] = sum_c first[n, c, y, x] * second[n, c, y + dy, x + dx] / C
    (dy-major channel order; ``second`` is zero outside the frame).

    Computed as small matrix products: for each dy and each tile of 8 pixels along a row, the tile's C-vectors
    of ``first`` times the C x (8 + 2d) window of ``second``; the band of D displacements per pixel is read off
    the 8 x (8 + 2d) product. That is 3x faster on a CPU than 81 shifted products. It runs as the operator
    ``torch.ops.upr.correlation`` (:mod:`core.ops.operators`), differentiable through
    ``torch.ops.upr.correlation_backward``; the result is channels_last. Inside
    :func:`core.ops.export_friendly.exporting` it is the 81 shifted products instead (plain tensor ops).
    """
    if first.shape != second.shape:
        raise ValueError(f"correlation: shapes {tuple(first.shape)} and {tuple(second.shape)} differ")
    if first.dim() != 4:
        raise ValueError(f"correlation: expected N x C x H x W maps, got {tuple(first.shape)}")
    if first.dtype in (torch.float16, torch.bfloat16):  # under autocast: sum in float32
        first, second = first.float(), second.float()
    if export_friendly.active():     # the one export hook of the correlation
        return kernels.shifted_products(first, second, max_displacement)
    return torch.ops.upr.correlation(first, second, max_displacement)
