"""Local correlation (cost volume) between two feature maps, max displacement 4, stride 1."""
import torch
import torch.nn.functional as F

from . import export_friendly as _export
from . import library  # noqa: F401  (registers torch.ops.upr.correlation)

MAX_DISPLACEMENT = 4
_BLOCK = 8   # pixels per matmul tile along x


def correlation(first, second, max_displacement=MAX_DISPLACEMENT):
    """Cost volume of ``first`` against shifted ``second``.

    first, second: N x C x H x W. Returns N x D^2 x H x W with D = 2 * max_displacement + 1, where
    out[n, (dy + d) * D + (dx + d), y, x] = sum_c first[n, c, y, x] * second[n, c, y + dy, x + dx] / C
    (dy-major channel order; ``second`` is zero outside the frame).

    Computed as small matrix products: for each dy and each tile of 8 pixels along a row, the tile's C-vectors
    of ``first`` times the C x (8 + 2d) window of ``second``; the band of D displacements per pixel is read off
    the 8 x (8 + 2d) product. That is 3x faster on a CPU than 81 shifted products. It runs as the operator
    ``torch.ops.upr.correlation`` (:mod:`core.ops.library`), differentiable through
    ``torch.ops.upr.correlation_backward``; the result is channels_last.
    """
    if _export.active():   # ONNX export: plain tensor ops (core.ops.export_friendly)
        return _export.correlation(first, second, max_displacement)
    if first.shape != second.shape:
        raise ValueError(f"correlation: shapes {tuple(first.shape)} and {tuple(second.shape)} differ")
    if first.dim() != 4:
        raise ValueError(f"correlation: expected N x C x H x W maps, got {tuple(first.shape)}")
    if first.dtype in (torch.float16, torch.bfloat16):  # under autocast: sum in float32
        first, second = first.float(), second.float()
    return torch.ops.upr.correlation(first, second, max_displacement)


def _tiles(first, second, d):
    """Rows of ``first`` as tiles of _BLOCK pixels (N*H, tiles, b, C) and ``second`` zero-padded by d
    (N x C x (H + 2d) x (W' + 2d), W' = W rounded up to whole tiles)."""
    n, c, h, w = first.shape
    b = _BLOCK
    tiles = -(-w // b)
    padded_w = tiles * b
    rows = F.pad(first, (0, padded_w - w)).permute(0, 2, 3, 1).reshape(n * h, tiles, b, c)
    second = F.pad(second, (d, d + padded_w - w, d, d))
    return rows, second, tiles, padded_w


def _windows(second, dy, n, c, h, tiles, padded_w, d):
    """The C x (b + 2d) windows of ``second`` (padded) at row offset dy for every tile: (N*H, tiles, C, b + 2d)."""
    shifted = second[:, :, dy:dy + h].permute(0, 2, 1, 3).reshape(n * h, c, padded_w + 2 * d)
    s = shifted.stride()
    return shifted.as_strided((n * h, tiles, c, _BLOCK + 2 * d), (s[0], _BLOCK * s[2], s[1], s[2]))


def _band_view(products, size):
    """The D displacements of each pixel in a tile's b x (b + 2d) product: (N*H, tiles, b, D), a strided view."""
    p = products.stride()
    return products.as_strided(products.shape[:3] + (size,), (p[0], p[1], p[2] + p[3], p[3]))


def correlation_forward(first, second, max_displacement=MAX_DISPLACEMENT):
    """The kernel of ``torch.ops.upr.correlation`` (every device): see :func:`correlation`."""
    d = max_displacement
    size = 2 * d + 1
    n, c, h, w = first.shape
    rows, second, tiles, padded_w = _tiles(first, second, d)
    bands = []
    for dy in range(size):
        products = torch.matmul(rows, _windows(second, dy, n, c, h, tiles, padded_w, d))  # (N*H, tiles, b, b+2d)
        bands.append(_band_view(products, size).reshape(n * h, padded_w, size)[:, :w])
    volume = torch.stack(bands, 2).reshape(n, h, w, size * size)     # (dy, dx) -> dy * D + dx
    return volume.permute(0, 3, 1, 2) / c


def correlation_backward(grad_output, first, second, max_displacement=MAX_DISPLACEMENT):
    """Gradients of :func:`correlation_forward` w.r.t. ``first`` and ``second``, by the transposed products:
    per dy, the band gradient is placed on the diagonal band of a b x (b + 2d) product gradient G; then
    d rows = G @ windows^T and d windows = rows^T @ G, the overlapping windows folded back onto ``second``."""
    d = max_displacement
    size = 2 * d + 1
    n, c, h, w = first.shape
    b = _BLOCK
    rows, padded_second, tiles, padded_w = _tiles(first, second, d)
    # (N, D^2, H, W) / C -> per dy the band gradient (N*H, W', D), zero past the frame
    grad = (grad_output.to(rows.dtype) / c).permute(0, 2, 3, 1).reshape(n * h, w, size, size)
    grad = F.pad(grad, (0, 0, 0, 0, 0, padded_w - w))
    grad_rows = torch.zeros_like(rows)
    grad_second = torch.zeros_like(padded_second)
    for dy in range(size):
        band_grad = grad[:, :, dy].reshape(n * h, tiles, b, size)
        products_grad = rows.new_zeros(n * h, tiles, b, b + 2 * d)
        _band_view(products_grad, size).copy_(band_grad)
        windows = _windows(padded_second, dy, n, c, h, tiles, padded_w, d)
        grad_rows += torch.matmul(products_grad, windows.transpose(2, 3))
        grad_windows = torch.matmul(rows.transpose(2, 3), products_grad)            # (N*H, tiles, C, b + 2d)
        # overlapping windows (stride b, width b + 2d) summed back onto the padded row: a 1-D fold
        folded = F.fold(grad_windows.permute(0, 2, 3, 1).reshape(n * h, c * (b + 2 * d), tiles),
                        (1, padded_w + 2 * d), (1, b + 2 * d), stride=(1, b))        # (N*H, C, 1, W' + 2d)
        grad_second[:, :, dy:dy + h] += folded.view(n, h, c, padded_w + 2 * d).permute(0, 2, 1, 3)
    grad_first = grad_rows.reshape(n, h, padded_w, c)[:, :, :w].permute(0, 3, 1, 2)
    grad_second = grad_second[:, :, d:d + h, d:d + w]
    return grad_first.to(first.dtype), grad_second.to(second.dtype)
