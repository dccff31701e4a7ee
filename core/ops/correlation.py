"""Local correlation (cost volume) between two feature maps, max displacement 4, stride 1."""
import torch
import torch.nn.functional as F

from . import export_friendly as _export

MAX_DISPLACEMENT = 4
_BLOCK = 8   # pixels per matmul tile along x


def correlation(first, second, max_displacement=MAX_DISPLACEMENT):
    """Cost volume of ``first`` against shifted ``second``.

    first, second: N x C x H x W. Returns N x D^2 x H x W with D = 2 * max_displacement + 1, where
    out[n, (dy + d) * D + (dx + d), y, x] = sum_c first[n, c, y, x] * second[n, c, y + dy, x + dx] / C
    (dy-major channel order; ``second`` is zero outside the frame).

    Computed as small matrix products: for each dy and each tile of 8 pixels along a row, the tile's C-vectors
    of ``first`` times the C x (8 + 2d) window of ``second``; the band of D displacements per pixel is read off
    the 8 x (8 + 2d) product. That is 3x faster on a CPU than 81 shifted products and differentiable.
    """
    if _export.active():   # ONNX export: plain tensor ops (core.ops.export_friendly)
        return _export.correlation(first, second, max_displacement)
    if first.shape != second.shape:
        raise ValueError(f"correlation: shapes {tuple(first.shape)} and {tuple(second.shape)} differ")
    if first.dtype in (torch.float16, torch.bfloat16):  # under autocast: sum in float32
        first, second = first.float(), second.float()
    d = max_displacement
    size = 2 * d + 1
    n, c, h, w = first.shape
    b = _BLOCK
    tiles = -(-w // b)
    padded_w = tiles * b
    # rows of first as tiles of b pixels: (N*H, tiles, b, C)
    rows = F.pad(first, (0, padded_w - w)).permute(0, 2, 3, 1).reshape(n * h, tiles, b, c)
    second = F.pad(second, (d, d + padded_w - w, d, d))           # N x C x (H + 2d) x (W' + 2d)
    bands = []
    for dy in range(size):
        shifted = second[:, :, dy:dy + h].permute(0, 2, 1, 3).reshape(n * h, c, padded_w + 2 * d)
        s = shifted.stride()
        windows = shifted.as_strided((n * h, tiles, c, b + 2 * d), (s[0], b * s[2], s[1], s[2]))
        products = torch.matmul(rows, windows)                       # (N*H, tiles, b, b + 2d)
        p = products.stride()
        band = products.as_strided((n * h, tiles, b, size), (p[0], p[1], p[2] + p[3], p[3]))
        bands.append(band.reshape(n * h, padded_w, size)[:, :w])
    volume = torch.stack(bands, 2).reshape(n, h, w, size * size)     # (dy, dx) -> dy * D + dx
    return volume.permute(0, 3, 1, 2) / c
