"""Local correlation (cost volume) between two feature maps, max displacement 4, stride 1."""
import torch
import torch.nn.functional as F

MAX_DISPLACEMENT = 4


def correlation(first, second, max_displacement=MAX_DISPLACEMENT):
    """Cost volume of ``first`` against shifted ``second``.

    first, second: N x C x H x W. Returns N x D^2 x H x W with D = 2 * max_displacement + 1, where
    out[n, (dy + d) * D + (dx + d), y, x] = sum_c first[n, c, y, x] * second[n, c, y + dy, x + dx] / C
    (dy-major channel order; ``second`` is zero outside the frame).
    """
    if first.shape != second.shape:
        raise ValueError(f"correlation: shapes {tuple(first.shape)} and {tuple(second.shape)} differ")
    if first.dtype in (torch.float16, torch.bfloat16):  # under autocast: sum in float32
        first, second = first.float(), second.float()
    d = max_displacement
    n, c, h, w = first.shape
    padded = F.pad(second, (d, d, d, d))
    costs = [
        (first * padded[:, :, dy:dy + h, dx:dx + w]).sum(1)
        for dy in range(2 * d + 1)
        for dx in range(2 * d + 1)
    ]
    return torch.stack(costs, 1) / c
