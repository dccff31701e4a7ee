"""The correlation's kernels: block matrix products (one kernel for every device, :func:`forward` and
:func:`backward`, below the operators ``torch.ops.upr.correlation`` / ``correlation_backward``), and its export
form, shifted products (:func:`shifted_products`). Semantics: :func:`core.ops.correlation.correlation`.

Not a splatting backend: the correlation has no variants to choose among.
"""
import torch
import torch.nn.functional as F

_BLOCK = 8   # pixels per matmul tile along x


def shifted_products(first, second, max_displacement):
    """The cost volume as (2d + 1)^2 shifted products of the zero-padded ``second``, each summed over channels
    (plain tensor ops an exporter can trace: ONNX Mul / ReduceSum)."""
    d = max_displacement
    n, c, h, w = first.shape
    padded = F.pad(second, (d, d, d, d))
    products = [(first * padded[:, :, dy:dy + h, dx:dx + w]).sum(1)
                for dy in range(2 * d + 1) for dx in range(2 * d + 1)]
    return torch.stack(products, 1) / c


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


def forward(first, second, max_displacement):
    """The kernel of ``torch.ops.upr.correlation`` (every device): see :func:`core.ops.correlation.correlation`."""
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


def backward(grad_output, first, second, max_displacement):
    """Gradients of :func:`forward` w.r.t. ``first`` and ``second``, by the transposed products:
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
