"""Forward warping by splatting (Niklaus & Liu, "Softmax Splatting for Video Frame Interpolation", CVPR 2020).

Every source pixel (x, y) of ``input`` is pushed to X = x + flow_x, Y = y + flow_y and added to the four
integer neighbours of (X, Y) with bilinear weights. Neighbours outside the frame are dropped one by one;
nothing is clamped. Gradients: w.r.t. ``input`` the transpose of the splat, w.r.t. ``flow`` the derivative of
the bilinear weights with floor(X), floor(Y) held constant (what autograd gives through ``torch.floor``).

Modes (``splat(input, flow, metric, mode)``):
    summation  the raw splat of ``input``.
    average    splat [input, 1], divide by the splatted ones.
    linear     splat [input * metric, metric], divide.
    softmax    splat [input * exp(metric), exp(metric)], divide (no max subtraction).
A normaliser that is exactly 0 (no pixel landed there) is replaced by 1, so empty pixels come out 0.

A flow of non-finite values (NaN, inf) splats nothing.

Every splat runs as a PyTorch operator (``torch.ops.upr.splat_prepare`` / ``splat_apply``, and
``torch.ops.upr.splat_sum``; :mod:`core.ops.library`) with one kernel per device; the variant within a device is
picked in one place (:func:`core.ops.library.splat_kernel`):
    "torch"   pure PyTorch (sorted embedding_bag; index_add on MPS), every device, deterministic; the reference
              the others are tested against (the functions ``reference_*`` below).
    "cpp"     a C++ kernel (``softsplat_cpu.py``) for CPU tensors, compiled on first use; 6-13x faster than the
              reference at 640x480.
    "triton"  Triton kernels (``softsplat_triton.py``) for CUDA tensors when triton is importable.
    "cupy"    CUDA kernels (``softsplat_cupy.py``) for CUDA tensors when CuPy is importable (and triton is not).
    "auto"    (default) cpp for CPU tensors, triton or else cupy for CUDA tensors, each when available; torch
              otherwise, and torch for CUDA tensors under ``torch.use_deterministic_algorithms(True)`` (the
              Triton and CuPy forwards add with atomics).
Force one with :func:`set_backend` or the environment variable ``UPR_SPLAT_BACKEND=auto|torch|cpp|cupy|triton``; a
forced backend that cannot serve a tensor raises RuntimeError.
"""
import torch
import torch.nn.functional as F

from . import export_friendly as _export
from . import library

_MODES = ("summation", "average", "linear", "softmax")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def set_backend(name):
    """Select the splatting backend: "auto", "torch", "cpp", "cupy" or "triton" (see :mod:`core.ops.library`)."""
    library.set_backend(name)


def get_backend():
    return library.get_backend()


def choose_backend(tensor):
    """The kernel ("torch", "cpp", "triton" or "cupy") that splats ``tensor`` under the selected backend and
    determinism setting; a forced backend that cannot serve the tensor raises RuntimeError."""
    return library.splat_kernel(tensor.device.type)


CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The four bilinear corners (dy, dx) of a splatted pixel, relative to its top-left target."""


def _cells_and_weights(flow):
    """Top-left target slot and the four bilinear corner weights of every source pixel.

    flow: N x 2 x H x W, pixels, channel 0 = x. Targets are slots of a grid padded by one row above and below
    and one column on the left, (H+2) x (W+1) per image (image pixel (y, x) is slot (y+1) * (W+1) + x+1), so
    every corner of a pixel that touches the frame has a slot; corner (dy, dx) of a source pixel is its cell's
    slot + dy * (W+1) + dx. Returns (cell N*H*W int32/int64, weight 4 x N*H*W in the order of
    :data:`CORNERS`); a corner off the frame has weight 0 (far-off cells are clamped onto the grid).
    """
    n, _, h, w = flow.shape
    x0, y0, _, _, weight_x, weight_y = _bilinear(flow)
    weights = [weight_x[dx] * weight_y[dy] for dy, dx in CORNERS]
    index_type = torch.int32 if 4 * n * (h + 2) * (w + 1) < 2 ** 31 else torch.int64
    cell_x = (x0.clamp(-1, w - 1) + 1).to(index_type)
    cell_y = (y0.clamp(-1, h - 1) + 1).to(index_type)
    image = (torch.arange(n, device=flow.device, dtype=index_type) * ((h + 2) * (w + 1))).view(n, 1, 1)
    cell = image + cell_y * (w + 1) + cell_x
    return cell.reshape(-1), torch.stack(weights).view(4, -1)


MERGE_MIN_PIXELS = 65536
"""Flows of at least this many pixels (N*H*W) order their corner contributions by sorting the N*H*W cells and
merging (preparing a 640x512 flow: 19 ms vs 25 ms sorting all corners, best of 15 on 2 threads); smaller ones
sort the 4*N*H*W corners directly (fewer kernels: 1.2 ms vs 2.4 ms merging at 160x128). Both give the same
order."""


class Splatting:
    """Bilinear forward splatting by one flow field, prepared once and applied to any number of inputs.

    flow: N x 2 x H x W (pixels, x first). The flow-only work (``torch.ops.upr.splat_prepare``: corner cells and
    weights for the C++ kernel, the corner contributions ordered by target for the reference) is done once per
    kernel layout and cached; each input is then splatted by ``torch.ops.upr.splat_apply``, differentiable
    w.r.t. the input and the flow. The "average" normaliser is computed once and cached. The result is
    channels_last if the input is, contiguous otherwise.
    """

    def __init__(self, flow):
        if flow.dim() != 4 or flow.shape[1] != 2:
            raise ValueError(f"splat: flow must be N x 2 x H x W, got {tuple(flow.shape)}")
        if flow.dtype in _LOW_PRECISION:
            flow = flow.float()
        self.flow = flow
        self.shape = (flow.shape[0], flow.shape[2], flow.shape[3])
        self._prepared = {}
        self._normalisers = {}

    def prepared(self, layout):
        """The prepared tensors (index, offsets, weight) of this flow in ``layout`` (cached)."""
        if layout not in self._prepared:
            self._prepared[layout] = torch.ops.upr.splat_prepare(self.flow.detach(), layout)
        return self._prepared[layout]

    def sum(self, input, weight=None, rows=None):
        """Summation splat of ``input`` (N x C x H x W), each source pixel optionally scaled by ``weight``
        (N x 1 x H x W, applied per pixel before splatting). ``rows`` = (y0, y1) computes only output rows
        y0 .. y1-1 (N x C x (y1-y0) x W), from all source pixels."""
        if _export.active():   # ONNX export: plain tensor ops (core.ops.export_friendly)
            return _export.splatting_sum(self.flow, input, weight, rows)
        n, h, w = self.shape
        if input.dim() != 4 or input.shape[0] != n or tuple(input.shape[2:]) != (h, w):
            raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(self.flow.shape)} do not match")
        y0, y1 = rows if rows is not None else (0, h)
        if input.dtype in _LOW_PRECISION:
            input = input.float()
        if weight is not None:
            input = input * weight
        layout = library.splat_layout(input.device.type)
        return torch.ops.upr.splat_apply(input, self.flow, *self.prepared(layout), layout, y0, y1)

    def normaliser(self, weight=None, rows=None):
        """Splatted per-pixel weights (ones by default), N x 1 x H x W (or the given rows); exact zeros are
        replaced by 1. Cached for the default weights."""
        if _export.active():   # ONNX export: no cache (its keys may be symbolic sizes)
            return _export.splatting_normaliser(self.flow, weight, rows)
        if weight is None and rows in self._normalisers:
            return self._normalisers[rows]
        ones = self.flow.new_ones(self.shape[0], 1, *self.shape[1:]) if weight is None else weight
        normaliser = self.sum(ones, rows=rows)
        normaliser = torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)
        if weight is None:
            self._normalisers[rows] = normaliser
        return normaliser

    def average(self, input, rows=None):
        """Average splatting: the splat of ``input`` divided by the splat of ones (optionally only ``rows``)."""
        return self.sum(input, rows=rows) / self.normaliser(rows=rows)


def splat_sum(input, flow):
    """Summation splatting. input: N x C x H x W, flow: N x 2 x H x W (pixels, x first). Returns N x C x H x W
    (``torch.ops.upr.splat_sum``; float16/bfloat16 are splatted in float32)."""
    if _export.active():   # ONNX export: plain tensor ops (core.ops.export_friendly)
        return _export.splatting_sum(flow, input, None, None)
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"splat: flow must be N x 2 x H x W, got {tuple(flow.shape)}")
    if input.dim() != 4 or input.shape[0] != flow.shape[0] or input.shape[2:] != flow.shape[2:]:
        raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(flow.shape)} do not match")
    if flow.dtype in _LOW_PRECISION:
        flow = flow.float()
    if input.dtype in _LOW_PRECISION:
        input = input.float()
    return torch.ops.upr.splat_sum(input, flow)


def splat(input, flow, metric=None, mode="average"):
    """Forward-warp ``input`` (N x C x H x W) by ``flow`` (N x 2 x H x W, pixels) in the given mode.

    ``metric`` (N x 1 x H x W) is required for "linear" and "softmax" and ignored otherwise.
    """
    if _export.active():   # ONNX export: plain tensor ops (core.ops.export_friendly)
        return _export.splat(input, flow, metric, mode)
    if mode not in _MODES:
        raise ValueError(f"unknown splatting mode {mode!r}; use one of {_MODES}")
    splatting = Splatting(flow)
    if mode == "summation":
        return splatting.sum(input)
    if mode == "average":
        return splatting.average(input)
    if metric is None:
        raise ValueError(f"splatting mode {mode!r} needs a metric")
    weight = metric if mode == "linear" else torch.exp(metric)
    return splatting.sum(input, weight) / splatting.normaliser(weight)


# ------------------------------------------------------------------------------- the reference (pure PyTorch)
# The "torch" kernels of core.ops.library's operators. They run below autograd (inside the operators), so the
# gradients are written out: both are gathers per source pixel (deterministic on every device).

def _slots(n, h, w):
    """(slots per image row, slots per image, all slots): the padded target grid of :func:`_cells_and_weights`
    plus one slot that the bottom-right corner of the last image's last cell may reach."""
    return w + 1, (h + 2) * (w + 1), n * (h + 2) * (w + 1) + 1


def _order_by_sorting(cell, shifts, slots):
    """Stable argsort of all 4 * N*H*W corner slots (corner-major): fewer kernels, best for small maps.
    Returns (position into the corner-major list, contributions per slot)."""
    targets = torch.stack([cell + shift for shift in shifts]).view(-1)
    return torch.argsort(targets, stable=True), torch.bincount(targets, minlength=slots)


def _order_by_merging(cell, shifts, slots):
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


def reference_prepare_bags(flow):
    """The reference's preparation ("bags" layout): (source pixel, bag offset per output pixel, weight) of the
    4 * N*H*W corner contributions in target order.

    The contributions are ordered by target pixel, corner by corner within a target and each corner's in source
    order (a deterministic summation order): for large flows the source pixels are sorted by their top-left
    target (stable, N*H*W keys), which orders each corner's contributions by target too, and the four runs are
    merged by counting; small flows sort all corners (see :data:`MERGE_MIN_PIXELS`)."""
    cell, weight = _cells_and_weights(flow)
    n, _, h, w = flow.shape
    pixels, index_type = cell.shape[0], library.bag_index_dtype(n, h, w)
    row, _, slots = _slots(n, h, w)
    shifts = [dy * row + dx for dy, dx in CORNERS]
    if pixels < MERGE_MIN_PIXELS:
        position, per_slot = _order_by_sorting(cell, shifts, slots)
    else:
        position, per_slot = _order_by_merging(cell, shifts, slots)
    segment_start = torch.cumsum(per_slot, 0) - per_slot
    # one bag per image pixel; off-frame slots' contributions (all of weight 0) fall into the bag before
    offsets = segment_start[:-1].view(n, h + 2, w + 1)[:, 1:h + 1, 1:].reshape(-1).to(index_type)
    return (position % pixels).to(index_type), offsets, weight.reshape(-1)[position]


def reference_apply_bags(input, source, offsets, weight, y0, y1):
    """Splat of ``input`` (N x C x H x W) by prepared bags: output rows y0 .. y1-1, each output pixel the
    ``F.embedding_bag`` sum of its contributions (a weighted gather-sum)."""
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


def reference_direct_sum(input, flow):
    """The reference without a kept preparation: each corner added with ``index_add_`` where embedding_bag is
    missing (MPS), prepare-and-apply otherwise."""
    if input.device.type in ("cpu", "cuda"):
        return reference_apply_bags(input, *reference_prepare_bags(flow), 0, input.shape[2])
    return reference_sum_by_corner(input, flow)


def reference_sum_by_corner(input, flow):
    """The splat adding each corner's contributions with ``index_add_`` (for devices without embedding_bag)."""
    n, c, h, w = input.shape
    table = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    cell, corner_weight = _cells_and_weights(flow)
    row, image, _ = _slots(n, h, w)
    output = table.new_zeros(table.shape)
    for k, (dy, dx) in enumerate(CORNERS):
        slot = cell.long() + dy * row + dx
        b, local = slot.div(image, rounding_mode="floor"), slot % image
        y, x = local.div(row, rounding_mode="floor") - 1, local % row - 1
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        index = torch.where(inside, b * h * w + y * w + x, 0)
        output.index_add_(0, index, table * corner_weight[k, :, None].to(table.dtype))
    return output.view(n, h, w, c).permute(0, 3, 1, 2)


def _bilinear(flow):
    """Per source pixel: top-left target (x0, y0) as int64 (clamped to [-2, W+1] x [-2, H+1], so huge flows cannot
    overflow and a clamped cell has no corner on the frame), the per-axis on-frame masks and weights ((left,
    right), (top, bottom)), zero for a neighbour off the frame. A non-finite target becomes -2: off the frame."""
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
    x0 = x0.clamp(-2, w + 1)
    y0 = y0.clamp(-2, h + 1)
    mask_x = ((x0 >= 0) & (x0 < w), (x0 >= -1) & (x0 < w - 1))
    mask_y = ((y0 >= 0) & (y0 < h), (y0 >= -1) & (y0 < h - 1))
    weight_x = ((1 - frac_x) * mask_x[0], frac_x * mask_x[1])
    weight_y = ((1 - frac_y) * mask_y[0], frac_y * mask_y[1])
    return x0.long(), y0.long(), mask_x, mask_y, weight_x, weight_y


def _gathered_corners(grad_output, flow, y0):
    """For every corner (in :data:`CORNERS` order): the output gradient at its target (N*H*W x C, zero for a
    target off the frame or outside output rows y0 .. y0+rows-1), plus the bilinear terms of :func:`_bilinear`."""
    n, c, rows, w = grad_output.shape
    h = flow.shape[2]
    x0, top, mask_x, mask_y, weight_x, weight_y = _bilinear(flow)
    table = torch.cat([grad_output.permute(0, 2, 3, 1).reshape(n * rows * w, c), grad_output.new_zeros(1, c)])
    image = (torch.arange(n, device=flow.device) * (rows * w)).view(n, 1, 1)
    gathered = []
    for dy, dx in CORNERS:
        tx, ty = x0 + dx, top + dy
        inside = (tx >= 0) & (tx < w) & (ty >= y0) & (ty < y0 + rows)
        index = torch.where(inside, image + (ty - y0) * w + tx, n * rows * w)
        gathered.append(table[index.reshape(-1)])
    return gathered, mask_x, mask_y, weight_x, weight_y


def reference_backward_input(grad_output, flow, y0):
    """Gradient of the splat w.r.t. its input from the gradient of output rows y0 .. y0+rows-1: every source
    pixel gathers its corners' output gradients, weighted (N x C x H x W, channels-last memory)."""
    n, c, _, w = grad_output.shape
    h = flow.shape[2]
    gathered, _, _, weight_x, weight_y = _gathered_corners(grad_output, flow, y0)
    grad = None
    for (dy, dx), values in zip(CORNERS, gathered):
        term = values * (weight_x[dx] * weight_y[dy]).reshape(-1, 1).to(values.dtype)
        grad = term if grad is None else grad + term
    return grad.view(n, h, w, c).permute(0, 3, 1, 2)


def reference_backward_flow(grad_output, input, flow, y0):
    """Gradient of the splat w.r.t. the flow (floor(X), floor(Y) held constant): per source pixel, the
    derivative of each corner weight times the dot product of the input and the output gradient there."""
    n, c, h, w = input.shape
    gathered, mask_x, mask_y, weight_x, weight_y = _gathered_corners(grad_output.to(input.dtype), flow, y0)
    source = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    slope_x = (-mask_x[0].to(flow.dtype), mask_x[1].to(flow.dtype))
    slope_y = (-mask_y[0].to(flow.dtype), mask_y[1].to(flow.dtype))
    grad_x = grad_y = 0
    for (dy, dx), values in zip(CORNERS, gathered):
        dot = (source * values).sum(1).view(n, h, w).to(flow.dtype)
        grad_x = grad_x + slope_x[dx] * weight_y[dy] * dot
        grad_y = grad_y + weight_x[dx] * slope_y[dy] * dot
    return torch.stack([grad_x, grad_y], 1)
