"""The pure-PyTorch splat ("torch"): the reference every other backend is tested against, on every device.

One bilinear definition (:func:`bilinear`: the floor of each target, the per-axis on-frame masks and weights)
serves three forms:

    bags      (CPU, CUDA) the corner contributions ordered by target once per flow (:func:`prepare_bags`), each
              output pixel then an ``F.embedding_bag`` sum of its contributions (:func:`apply_bags`):
              deterministic, and the flow-only work is kept for every input splatted with the same flow.
    scatter   (devices without embedding_bag: MPS, ...; and ONNX export) every corner's flattened target and
              weight computed elementwise and all contributions added with one ``scatter_add``
              (:func:`scatter_sum`; ONNX ScatterElements with reduction "add"). Written with elementwise ops and
              comparisons only, so the exporter's tracer follows it with symbolic sizes.
    gathers   the gradients (:func:`backward_input`, :func:`backward_flow`): every source pixel gathers its
              corners' output gradients (deterministic on every device).

Semantics (those of :mod:`core.ops.softsplat`): source pixel (x, y) goes to X = x + flow_x, Y = y + flow_y and is
added to the four integer neighbours of (X, Y) with bilinear weights; a neighbour off the frame is dropped, a
non-finite target splats nothing; the flow gradient is that of the weights with floor(X), floor(Y) held constant.
"""
import torch
import torch.nn.functional as F

from .base import Backend, memory_format

CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The four bilinear corners (dy, dx) of a splatted pixel, relative to its top-left target (floor(Y), floor(X))."""

EMBEDDING_BAG_DEVICES = ("cpu", "cuda")
"""Devices where the "bags" form runs; the others splat by scatter."""

MERGE_MIN_PIXELS = 65536
"""Flows of at least this many pixels (N*H*W) order their corner contributions by sorting the N*H*W cells and
merging (preparing a 640x512 flow: 19 ms vs 25 ms sorting all corners, best of 15 on 2 threads); smaller ones
sort the 4*N*H*W corners directly (fewer kernels: 1.2 ms vs 2.4 ms merging at 160x128). Both give the same
order."""


def bilinear(flow):
    """Per source pixel of ``flow`` (N x 2 x H x W, pixels, channel 0 = x): the floor of its target (x0, y0, in the
    flow's dtype; a non-finite target becomes -2 on its axis, so all its corners are off the frame), the per-axis
    on-frame masks ((left, right), (top, bottom)) and weights (zero for a neighbour off the frame). Corner (dy, dx)
    lands on (x0 + dx, y0 + dy) with weight ``weight_x[dx] * weight_y[dy]``."""
    n, _, h, w = flow.shape
    grid_x = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    grid_y = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    off = flow.new_tensor(-2.0)
    target_x = grid_x + flow[:, 0]
    target_y = grid_y + flow[:, 1]
    target_x = torch.where(torch.isfinite(target_x), target_x, off)
    target_y = torch.where(torch.isfinite(target_y), target_y, off)
    x0 = torch.floor(target_x)
    y0 = torch.floor(target_y)
    frac_x = target_x - x0
    frac_y = target_y - y0
    mask_x = ((x0 >= 0) & (x0 < w), (x0 >= -1) & (x0 < w - 1))
    mask_y = ((y0 >= 0) & (y0 < h), (y0 >= -1) & (y0 < h - 1))
    weight_x = ((1 - frac_x) * mask_x[0], frac_x * mask_x[1])
    weight_y = ((1 - frac_y) * mask_y[0], frac_y * mask_y[1])
    return x0, y0, mask_x, mask_y, weight_x, weight_y


def corner_targets(flow, terms, y0=0, rows=None):
    """Flattened target and weight of every corner of every source pixel (``terms`` = :func:`bilinear` (flow)).

    Targets index an (N*rows*W + 1)-row table of output rows y0 .. y0+rows-1 (default: the whole frame), image n's
    pixel (y, x) at n*rows*W + (y-y0)*W + x; a corner off the frame or outside the rows goes to the last row, a
    spare slot. Returns (index 4 x N*H*W int64, weight 4 x N*H*W), corners in the order of :data:`CORNERS`.
    Coordinates are zeroed outside before the integer cast, so huge targets never reach int64."""
    n, _, h, w = flow.shape
    x0, top, mask_x, mask_y, weight_x, weight_y = terms
    window = rows is not None and (y0, rows) != (0, h)
    if rows is None:
        rows = h
    image = (torch.arange(n, device=flow.device, dtype=torch.int64) * (rows * w)).view(n, 1, 1)
    spare = torch.full_like(image.expand(n, h, w), n * rows * w)
    zero = torch.zeros_like(x0)
    indices, weights = [], []
    for dy, dx in CORNERS:
        x, y = x0 + dx, top + dy
        inside = mask_x[dx] & mask_y[dy]
        if window:
            inside = inside & (y >= y0) & (y < y0 + rows)
        col = torch.where(inside, x, zero).to(torch.int64)
        row = torch.where(inside, y - y0, zero).to(torch.int64)
        indices.append(torch.where(inside, image + row * w + col, spare))
        weights.append(weight_x[dx] * weight_y[dy])
    return torch.stack(indices).reshape(4, -1), torch.stack(weights).reshape(4, -1)


def scatter_sum(input, flow):
    """Summation splat of ``input`` (N x C x H x W) by ``flow``: all 4 * N*H*W corner contributions added with one
    ``scatter_add`` into an (N*H*W + 1) x C table (the last row collects the corners off the frame). Plain tensor
    ops (the ONNX export form; the TorchScript exporter turns ``index_put(accumulate=True)`` into a ScatterND
    without reduction, which is wrong, hence scatter_add). Returns a channels-last view."""
    n, c, h, w = input.shape
    index, corner_weight = corner_targets(flow, bilinear(flow))
    table = input.permute(0, 2, 3, 1).reshape(1, n * h * w, c)                # source pixels' C-vectors
    updates = (table * corner_weight.to(input.dtype).unsqueeze(2)).reshape(4 * n * h * w, c)
    output = input.new_zeros(n * h * w + 1, c)
    output = output.scatter_add(0, index.reshape(-1, 1).expand(-1, c), updates)
    return output[:n * h * w].reshape(n, h, w, c).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------------- the "bags" layout

def bag_index_dtype(n, h, w):
    """int32 where every slot of the padded grid of :func:`cells_and_weights` fits, int64 otherwise."""
    return torch.int32 if 4 * n * (h + 2) * (w + 1) < 2 ** 31 else torch.int64


def cells_and_weights(flow):
    """Top-left target slot and the four bilinear corner weights of every source pixel.

    Targets are slots of a grid padded by one row above and below and one column on the left, (H+2) x (W+1) per
    image (image pixel (y, x) is slot (y+1) * (W+1) + x+1), so every corner of a pixel that touches the frame has a
    slot; corner (dy, dx) of a source pixel is its cell's slot + dy * (W+1) + dx. Returns (cell N*H*W int32/int64,
    weight 4 x N*H*W in the order of :data:`CORNERS`); a corner off the frame has weight 0 (far-off cells are
    clamped onto the grid)."""
    n, _, h, w = flow.shape
    x0, y0, _, _, weight_x, weight_y = bilinear(flow)
    weights = [weight_x[dx] * weight_y[dy] for dy, dx in CORNERS]
    index_type = bag_index_dtype(n, h, w)
    cell_x = (x0.clamp(-1, w - 1) + 1).to(index_type)
    cell_y = (y0.clamp(-1, h - 1) + 1).to(index_type)
    image = (torch.arange(n, device=flow.device, dtype=index_type) * ((h + 2) * (w + 1))).view(n, 1, 1)
    cell = image + cell_y * (w + 1) + cell_x
    return cell.reshape(-1), torch.stack(weights).view(4, -1)


def slots(n, h, w):
    """(slots per image row, slots per image, all slots): the padded target grid of :func:`cells_and_weights`
    plus one slot that the bottom-right corner of the last image's last cell may reach."""
    return w + 1, (h + 2) * (w + 1), n * (h + 2) * (w + 1) + 1


def order_by_sorting(cell, shifts, slots):
    """Stable argsort of all 4 * N*H*W corner slots (corner-major): fewer kernels, best for small maps.
    Returns (position into the corner-major list, contributions per slot)."""
    targets = torch.stack([cell + shift for shift in shifts]).view(-1)
    return torch.argsort(targets, stable=True), torch.bincount(targets, minlength=slots)


def order_by_merging(cell, shifts, slots):
    """The same order from a stable sort of the N*H*W cells alone: each corner's contributions then lie in
    target order, and counting places corner k's run of every slot after those of corners 0 .. k-1."""
    pixels = cell.shape[0]
    order = torch.argsort(cell, stable=True)
    sorted_cell = cell[order]
    per_cell = torch.bincount(cell, minlength=slots)
    rank = torch.arange(pixels, device=cell.device) - (torch.cumsum(per_cell, 0) - per_cell)[sorted_cell]
    per_slot = torch.zeros_like(per_cell)           # corner k brings per_cell[slot - shift_k] to a slot
    for shift in shifts:
        per_slot[shift:] += per_cell[:slots - shift]
    run_start = torch.cumsum(per_slot, 0) - per_slot
    position = torch.empty(4 * pixels, dtype=torch.int64, device=cell.device)
    for k, shift in enumerate(shifts):
        position[run_start[sorted_cell + shift] + rank] = order + k * pixels
        run_start[shift:] += per_cell[:slots - shift]  # the next corner's runs start after this one's
    return position, per_slot


def prepare_bags(flow):
    """The "bags" preparation: (source pixel, bag offset per output pixel, weight) of the 4 * N*H*W corner
    contributions in target order.

    The contributions are ordered by target pixel, corner by corner within a target and each corner's in source
    order (a deterministic summation order): for large flows the source pixels are sorted by their top-left
    target (stable, N*H*W keys), which orders each corner's contributions by target too, and the four runs are
    merged by counting; small flows sort all corners (see :data:`MERGE_MIN_PIXELS`)."""
    cell, weight = cells_and_weights(flow)
    n, _, h, w = flow.shape
    pixels, index_type = cell.shape[0], bag_index_dtype(n, h, w)
    row, _, count = slots(n, h, w)
    shifts = [dy * row + dx for dy, dx in CORNERS]
    if pixels < MERGE_MIN_PIXELS:
        position, per_slot = order_by_sorting(cell, shifts, count)
    else:
        position, per_slot = order_by_merging(cell, shifts, count)
    segment_start = torch.cumsum(per_slot, 0) - per_slot
    # one bag per image pixel; off-frame slots' contributions (all of weight 0) fall into the bag before
    offsets = segment_start[:-1].view(n, h + 2, w + 1)[:, 1:h + 1, 1:].reshape(-1).to(index_type)
    return (position % pixels).to(index_type), offsets, weight.reshape(-1)[position]


def apply_bags(input, source, offsets, weight, y0, y1):
    """Splat of ``input`` (N x C x H x W) by prepared bags: output rows y0 .. y1-1, each output pixel the
    ``F.embedding_bag`` sum of its contributions (a weighted gather-sum). Returns a channels-last view."""
    n, c, h, w = input.shape
    if c == 0:   # nothing to gather (embedding_bag rejects a table without columns)
        return input.new_zeros(n, 0, y1 - y0, w)
    # rows of the table are gathered: contiguous rows (one copy for NCHW input) gather several times faster
    table = input.permute(0, 2, 3, 1).reshape(n * h * w, c).contiguous()
    weight = weight.to(table.dtype)

    def bags(first, last):
        start = int(offsets[first])
        end = int(offsets[last]) if last < len(offsets) else len(source)
        return F.embedding_bag(source[start:end], table, offsets[first:last] - start, mode="sum",
                               per_sample_weights=weight[start:end])

    if (y0, y1) == (0, h):
        output = bags(0, n * h * w)
    else:
        output = torch.cat([bags(b * h * w + y0 * w, b * h * w + y1 * w) for b in range(n)])
    return output.view(n, y1 - y0, w, c).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------- the gradients

def _gathered_corners(grad_output, flow, y0):
    """The output gradient at every corner's target (4 x N*H*W x C, zero for a target off the frame or outside
    output rows y0 .. y0+rows-1), the corner weights (4 x N*H*W) and the :func:`bilinear` terms."""
    n, c, rows, w = grad_output.shape
    terms = bilinear(flow)
    index, weight = corner_targets(flow, terms, y0, rows)
    table = torch.cat([grad_output.permute(0, 2, 3, 1).reshape(n * rows * w, c), grad_output.new_zeros(1, c)])
    return table[index.reshape(-1)].view(4, -1, c), weight, terms


def backward_input(grad_output, flow, y0):
    """Gradient of the splat w.r.t. its input from the gradient of output rows y0 .. y0+rows-1: every source
    pixel gathers its corners' output gradients, weighted (N x C x H x W, channels-last memory)."""
    n, c, _, w = grad_output.shape
    h = flow.shape[2]
    gathered, weight, _ = _gathered_corners(grad_output, flow, y0)
    grad = None
    for values, corner_weight in zip(gathered, weight):
        term = values * corner_weight.reshape(-1, 1).to(values.dtype)
        grad = term if grad is None else grad + term
    return grad.view(n, h, w, c).permute(0, 3, 1, 2)


def backward_flow(grad_output, input, flow, y0):
    """Gradient of the splat w.r.t. the flow (floor(X), floor(Y) held constant): per source pixel, the
    derivative of each corner weight times the dot product of the input and the output gradient there."""
    n, c, h, w = input.shape
    gathered, _, (_, _, mask_x, mask_y, weight_x, weight_y) = _gathered_corners(grad_output.to(input.dtype), flow, y0)
    source = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    slope_x = (-mask_x[0].to(flow.dtype), mask_x[1].to(flow.dtype))
    slope_y = (-mask_y[0].to(flow.dtype), mask_y[1].to(flow.dtype))
    grad_x = grad_y = 0
    for (dy, dx), values in zip(CORNERS, gathered):
        dot = (source * values).sum(1).view(n, h, w).to(flow.dtype)
        grad_x = grad_x + slope_x[dx] * weight_y[dy] * dot
        grad_y = grad_y + weight_x[dx] * slope_y[dy] * dot
    return torch.stack([grad_x, grad_y], 1)


class Reference(Backend):
    """Every device, deterministic; the "bags" layout where embedding_bag runs, whole frames by scatter
    elsewhere."""
    name = "torch"
    device_types = None
    deterministic = True
    layout = "bags"

    def why_not(self, device_type):
        return None

    def layout_for(self, device_type):
        return self.layout if device_type in EMBEDDING_BAG_DEVICES else None

    def prepare(self, flow):
        return prepare_bags(flow)

    def prepared_like(self, flow):
        n, _, h, w = flow.shape
        pixels, index_type = n * h * w, bag_index_dtype(n, h, w)
        return (flow.new_empty(4 * pixels, dtype=index_type), flow.new_empty(pixels, dtype=index_type),
                flow.new_empty(4 * pixels))

    def apply(self, input, flow, prepared, y0, y1):
        return apply_bags(input, *prepared, y0, y1).contiguous(memory_format=memory_format(input))

    def apply_backward_input(self, grad_output, flow, prepared, y0):
        return backward_input(grad_output, flow, y0)

    def apply_backward_flow(self, grad_output, input, flow, prepared, y0):
        return backward_flow(grad_output, input, flow, y0)

    def splat_sum(self, input, flow):
        if input.device.type in EMBEDDING_BAG_DEVICES:
            return super().splat_sum(input, flow)
        return scatter_sum(input, flow).contiguous(memory_format=memory_format(input))

    def splat_sum_backward(self, grad_output, input, flow, need_input, need_flow):   # the gathers prepare nothing
        return (backward_input(grad_output, flow, 0) if need_input else None,
                backward_flow(grad_output, input, flow, 0) if need_flow else None)


BACKEND = Reference()
