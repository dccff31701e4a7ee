"""Export-friendly splatting and correlation: the same values from plain tensor ops an exporter can trace.

The fast implementations (``softsplat.Splatting``'s sorted embedding_bag, the C++ / CuPy kernels, the
correlation's strided matmul tiles) use data-dependent sizes, ``as_strided`` and custom kernels that ONNX cannot
express. Inside :func:`exporting` the model's entry points route here instead::

    with core.ops.export_friendly.exporting():
        torch.onnx.export(model, ...)    # splatting -> ScatterElements(reduction="add"), correlation -> Mul/ReduceSum

The hooks: the first lines of ``softsplat.splat``, of ``softsplat.Splatting.sum`` and ``.normaliser`` (the
synthesis network calls ``Splatting.average``, which is made of those two) and of ``correlation.correlation``
check :func:`active` and call :func:`splat`, :func:`splatting_sum`, :func:`splatting_normaliser` or
:func:`correlation` here. Outside the context nothing changes.

Splatting (the definition of ``softsplat``): every source pixel (x, y) goes to X = x + flow_x, Y = y + flow_y
and is added to the four integer neighbours of (X, Y) with bilinear weights; a neighbour off the frame is
dropped, a non-finite flow splats nothing. Here each corner's flattened target index and weight are computed
elementwise, off-frame corners are sent to one spare slot past the end, and all 4 * N*H*W contributions are
added with one ``scatter_add`` into an (N*H*W + 1) x C table (ONNX: ScatterElements, reduction "add"; the
TorchScript exporter turns ``index_put(accumulate=True)`` into a ScatterND without reduction, which is wrong).
The summation order differs from the reference, so results agree to float rounding, not bit for bit.

Correlation: 81 shifted products of the zero-padded second map, each summed over channels, divided by C.

Both are differentiable and run anywhere PyTorch runs, but are slower than the default paths; they exist for
export. :func:`active` is a process-wide flag (not thread-local): do not export while another thread runs the
model.
"""
import contextlib

import torch
import torch.nn.functional as F

MODES = ("summation", "average", "linear", "softmax")
CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The four bilinear corners (dy, dx) of a splatted pixel, relative to floor(Y), floor(X) (as in softsplat)."""

_depth = 0


def active():
    """Whether :func:`exporting` is open: the hooks in softsplat and correlation then route here."""
    return _depth > 0


@contextlib.contextmanager
def exporting():
    """Route ``core.ops.splat``, ``Splatting.sum`` and ``core.ops.correlation`` to the export-friendly ops
    while the context is open (re-entrant)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def _targets_and_weights(flow):
    """Flattened target index and bilinear weight of every corner of every source pixel.

    flow: N x 2 x H x W (pixels, channel 0 = x). Returns (index 4 x N*H*W int64, weight 4 x N*H*W), corners in
    the order of :data:`CORNERS`; image n's pixel (y, x) is index n*H*W + y*W + x, and a corner off the frame
    (or of a non-finite flow) has index N*H*W (the spare slot) and weight 0.
    """
    n, _, h, w = flow.shape
    grid_x = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    grid_y = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    target_x = grid_x + flow[:, 0]
    target_y = grid_y + flow[:, 1]
    # a non-finite target goes to -2 on its axis: off the frame, so all four corners are dropped
    off = torch.full_like(target_x, -2.0)
    target_x = torch.where(torch.isfinite(target_x), target_x, off)
    target_y = torch.where(torch.isfinite(target_y), target_y, off)
    x0 = torch.floor(target_x)
    y0 = torch.floor(target_y)
    frac_x = target_x - x0
    frac_y = target_y - y0
    x0, y0 = x0.detach(), y0.detach()
    weight_x = (1 - frac_x, frac_x)
    weight_y = (1 - frac_y, frac_y)
    image = (torch.arange(n, device=flow.device, dtype=torch.int64) * (h * w)).view(n, 1, 1)
    spare = torch.full_like(image.expand(n, h, w), n * h * w)
    zero = torch.zeros_like(target_x)
    indices, weights = [], []
    for dy, dx in CORNERS:
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        # zeroed outside before the cast, so huge or non-finite coordinates never reach int64
        col = torch.where(inside, x, zero).to(torch.int64)
        row = torch.where(inside, y, zero).to(torch.int64)
        indices.append(torch.where(inside, image + row * w + col, spare))
        weights.append(torch.where(inside, weight_x[dx] * weight_y[dy], zero))
    return torch.stack(indices).reshape(4, -1), torch.stack(weights).reshape(4, -1)


def splat_sum(input, flow, weight=None):
    """Summation splat of ``input`` (N x C x H x W) by ``flow`` (N x 2 x H x W, pixels), each source pixel
    optionally scaled by ``weight`` (N x 1 x H x W) first. Returns N x C x H x W (float32 for float16/bfloat16
    input, like softsplat)."""
    if input.dtype in (torch.float16, torch.bfloat16):
        input = input.float()
    if flow.dtype in (torch.float16, torch.bfloat16):
        flow = flow.float()
    if weight is not None:
        input = input * weight
    n, c, h, w = input.shape
    index, corner_weight = _targets_and_weights(flow)
    table = input.permute(0, 2, 3, 1).reshape(1, n * h * w, c)                # source pixels' C-vectors
    updates = (table * corner_weight.to(input.dtype).unsqueeze(2)).reshape(4 * n * h * w, c)
    output = input.new_zeros(n * h * w + 1, c)                               # + the spare slot
    output = output.scatter_add(0, index.reshape(-1, 1).expand(-1, c), updates)
    return output[:n * h * w].reshape(n, h, w, c).permute(0, 3, 1, 2)


def _normalised(sums, normaliser):
    """Divide by the splatted weights, an exact 0 (no pixel landed) replaced by 1 as in softsplat."""
    return sums / torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)


def splat(input, flow, metric=None, mode="average"):
    """``softsplat.splat`` in plain tensor ops: the four modes, with one scatter for values and normaliser."""
    if mode not in MODES:
        raise ValueError(f"unknown splatting mode {mode!r}; use one of {MODES}")
    if mode == "summation":
        return splat_sum(input, flow)
    if input.dtype in (torch.float16, torch.bfloat16):
        input = input.float()
    if mode == "average":
        weight = torch.ones_like(input[:, :1])
    elif metric is None:
        raise ValueError(f"splatting mode {mode!r} needs a metric")
    else:
        weight = metric.to(input.dtype) if mode == "linear" else torch.exp(metric.to(input.dtype))
    both = splat_sum(torch.cat([input * weight, weight], 1), flow)
    c = input.shape[1]
    return _normalised(both[:, :c], both[:, c:])


def splatting_sum(flow, input, weight=None, rows=None):
    """``Splatting(flow).sum(input, weight, rows)``: the summation splat, optionally only rows y0 .. y1-1."""
    output = splat_sum(input, flow, weight)
    if rows is not None:
        output = output[:, :, rows[0]:rows[1]]
    return output


def splatting_normaliser(flow, weight=None, rows=None):
    """``Splatting(flow).normaliser(weight, rows)``: the splatted weights (ones by default), N x 1 x H x W (or
    the given rows), exact zeros replaced by 1; not cached."""
    if weight is None:
        weight = torch.ones_like(flow[:, :1])
    normaliser = splatting_sum(flow, weight, None, rows)
    return torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)


def correlation(first, second, max_displacement=4):
    """``core.ops.correlation`` as shifted products: N x D^2 x H x W, D = 2 * max_displacement + 1,
    out[n, (dy + d) * D + (dx + d), y, x] = sum_c first[n, c, y, x] * second[n, c, y + dy, x + dx] / C,
    ``second`` zero outside the frame."""
    if first.dim() != 4 or first.shape != second.shape:
        raise ValueError(f"correlation: shapes {tuple(first.shape)} and {tuple(second.shape)} differ")
    if first.dtype in (torch.float16, torch.bfloat16):
        first, second = first.float(), second.float()
    d = max_displacement
    n, c, h, w = first.shape
    padded = F.pad(second, (d, d, d, d))
    products = [(first * padded[:, :, dy:dy + h, dx:dx + w]).sum(1)
                for dy in range(2 * d + 1) for dx in range(2 * d + 1)]
    return torch.stack(products, 1) / c
