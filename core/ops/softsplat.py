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

Backends, chosen in one place (:func:`choose_backend`):
    "torch"  pure PyTorch (embedding_bag; index_add on MPS), runs on CPU, CUDA and MPS, differentiable; the
             reference the others are tested against.
    "cupy"   a CUDA kernel (``softsplat_cupy.py``) for CUDA tensors when CuPy is importable, differentiable.
    "cpp"    a C++ kernel (``softsplat_cpu.py``) for CPU tensors, differentiable, compiled on first use; 6-13x
             faster than the reference at 640x480.
    "auto"   (default) cupy for CUDA tensors, cpp for CPU tensors, each when available; torch otherwise.
Force one with :func:`set_backend` or the environment variable ``UPR_SPLAT_BACKEND=auto|torch|cupy|cpp``.
"""
import os

import torch
import torch.nn.functional as F

from . import export_friendly as _export

_MODES = ("summation", "average", "linear", "softmax")
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_backend = os.environ.get("UPR_SPLAT_BACKEND", "auto")


_BACKENDS = ("auto", "torch", "cupy", "cpp")


def set_backend(name):
    """Select the splatting backend: "auto", "torch", "cupy" or "cpp"."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"unknown splatting backend {name!r}; use one of {_BACKENDS}")
    _backend = name


def get_backend():
    return _backend


def choose_backend(tensor):
    """The implementation ("torch", "cupy" or "cpp") that splats ``tensor`` under the selected backend; a forced
    backend that cannot serve the tensor raises RuntimeError."""
    if _backend == "torch":
        return "torch"
    if tensor.is_cuda:
        from . import softsplat_cupy
        if _backend in ("auto", "cupy") and softsplat_cupy.available():
            return "cupy"
        if _backend != "auto":
            raise RuntimeError(f"splatting backend {_backend!r} was forced but cannot splat CUDA tensors"
                               + (" (CuPy is not importable)" if _backend == "cupy" else ""))
        return "torch"
    if _backend == "cupy":
        raise RuntimeError("splatting backend 'cupy' was forced but the tensor is not on a CUDA device")
    if tensor.device.type != "cpu":
        if _backend == "cpp":
            raise RuntimeError(f"splatting backend 'cpp' was forced but the tensor is on {tensor.device.type}")
        return "torch"
    from . import softsplat_cpu
    if softsplat_cpu.available():
        return "cpp"
    if _backend == "cpp":
        raise RuntimeError("splatting backend 'cpp' was forced but the C++ kernel could not be built")
    return "torch"


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
    grid_x = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    grid_y = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    # a non-finite target becomes -2: off the frame, both of its axis' weights are 0
    off = flow.new_tensor(-2.0)
    target_x = grid_x + flow[:, 0]
    target_y = grid_y + flow[:, 1]
    target_x = torch.where(torch.isfinite(target_x), target_x, off)
    target_y = torch.where(torch.isfinite(target_y), target_y, off)
    x0 = torch.floor(target_x)
    y0 = torch.floor(target_y)
    frac_x = target_x - x0
    frac_y = target_y - y0
    # clamped before the cast so huge flows cannot overflow; a clamped cell has no corner on the frame
    x0 = x0.detach().clamp(-2, w + 1)
    y0 = y0.detach().clamp(-2, h + 1)
    # per-axis weights of the two neighbours, zero for a neighbour off the frame: (left, right), (top, bottom)
    weight_x = ((1 - frac_x) * ((x0 >= 0) & (x0 < w)), frac_x * ((x0 >= -1) & (x0 < w - 1)))
    weight_y = ((1 - frac_y) * ((y0 >= 0) & (y0 < h)), frac_y * ((y0 >= -1) & (y0 < h - 1)))
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

    flow: N x 2 x H x W (pixels, x first). The 4 * N*H*W corner contributions are ordered by target pixel once,
    corner by corner within a target and each corner's in source order (a deterministic summation order): for
    large flows the source pixels are sorted by their top-left target (stable, N*H*W keys), which orders each
    corner's contributions by target too, and the four runs are merged by counting; small flows sort all
    corners (see :data:`MERGE_MIN_PIXELS`). Each input is then summed target by
    target with ``F.embedding_bag`` (a weighted gather-sum, differentiable w.r.t. the input and the weights,
    hence the flow). The "average" normaliser is computed once and cached. The result is channels_last if the
    input is, contiguous otherwise.
    On devices without embedding_bag support (MPS) each corner is added with ``index_add_`` instead. Inputs
    served by the cupy or cpp backends (see :func:`choose_backend`) skip this preparation.
    """

    def __init__(self, flow):
        if flow.dim() != 4 or flow.shape[1] != 2:
            raise ValueError(f"splat: flow must be N x 2 x H x W, got {tuple(flow.shape)}")
        if flow.dtype in _LOW_PRECISION:
            flow = flow.float()
        self.flow = flow
        self.shape = (flow.shape[0], flow.shape[2], flow.shape[3])
        self._bags = None
        self._cpu_cells = None
        self._normalisers = {}

    def _slots(self):
        """(slots per image row, slots per image, all slots): the padded target grid of :func:`_cells_and_weights`
        plus one slot that the bottom-right corner of the last image's last cell may reach."""
        n, h, w = self.shape
        return w + 1, (h + 2) * (w + 1), n * (h + 2) * (w + 1) + 1

    def _prepare(self):
        """(source pixel, bag offset per output pixel, weight) of the corner contributions in target order."""
        if self._bags is None:
            cell, weight = _cells_and_weights(self.flow)
            n, h, w = self.shape
            pixels, index_type = cell.shape[0], cell.dtype
            row, _, slots = self._slots()
            shifts = [dy * row + dx for dy, dx in CORNERS]
            if pixels < MERGE_MIN_PIXELS:
                position, per_slot = self._order_by_sorting(cell, shifts, slots)
            else:
                position, per_slot = self._order_by_merging(cell, shifts, slots)
            segment_start = torch.cumsum(per_slot, 0) - per_slot
            # one bag per image pixel; off-frame slots' contributions (all of weight 0) fall into the bag before
            offsets = segment_start[:-1].view(n, h + 2, w + 1)[:, 1:h + 1, 1:].reshape(-1).to(index_type)
            self._bags = ((position % pixels).to(index_type), offsets, weight.reshape(-1)[position])
        return self._bags

    @staticmethod
    def _order_by_sorting(cell, shifts, slots):
        """Stable argsort of all 4 * N*H*W corner slots (corner-major): fewer kernels, best for small maps.
        Returns (position into the corner-major list, contributions per slot)."""
        targets = torch.stack([cell + shift for shift in shifts]).view(-1)
        return torch.argsort(targets, stable=True), torch.bincount(targets, minlength=slots)

    @staticmethod
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

    def _sum_bags(self, table, first, last):
        """Splat sums of output pixels first .. last-1 of the flattened N*H*W output: (last-first) x C."""
        source, offsets, weight = self._prepare()
        start = int(offsets[first])
        end = int(offsets[last]) if last < len(offsets) else len(source)
        return F.embedding_bag(source[start:end], table, offsets[first:last] - start, mode="sum",
                               per_sample_weights=weight[start:end].to(table.dtype))

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
        backend = choose_backend(input)
        if backend == "cupy":
            from . import softsplat_cupy
            return softsplat_cupy.splat_sum(input, self.flow.to(input.dtype))[:, :, y0:y1]
        if backend == "cpp":
            from . import softsplat_cpu
            if self._cpu_cells is None:
                self._cpu_cells = softsplat_cpu.prepare(self.flow)
            return softsplat_cpu.apply(input, self.flow, *self._cpu_cells, (y0, y1))
        c = input.shape[1]
        channels_last = input.is_contiguous(memory_format=torch.channels_last)
        # rows of the table are gathered: contiguous rows (one copy for NCHW input) gather several times faster
        table = input.permute(0, 2, 3, 1).reshape(n * h * w, c).contiguous()
        if input.device.type == "mps":
            output = self._sum_by_corner(table).view(n, h, w, c)[:, y0:y1]
        elif (y0, y1) == (0, h):
            output = self._sum_bags(table, 0, n * h * w)
        else:
            output = torch.cat([self._sum_bags(table, b * h * w + y0 * w, b * h * w + y1 * w) for b in range(n)])
        output = output.view(n, y1 - y0, w, c).permute(0, 3, 1, 2)
        return output if channels_last else output.contiguous()

    def _sum_by_corner(self, table):
        cell, corner_weight = _cells_and_weights(self.flow)
        n, h, w = self.shape
        row, image, _ = self._slots()
        output = table.new_zeros(table.shape)
        for k, (dy, dx) in enumerate(CORNERS):
            slot = cell.long() + dy * row + dx
            b, local = slot.div(image, rounding_mode="floor"), slot % image
            y, x = local.div(row, rounding_mode="floor") - 1, local % row - 1
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            index = torch.where(inside, b * h * w + y * w + x, 0)
            output.index_add_(0, index, table * corner_weight[k, :, None].to(table.dtype))
        return output

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
    """Summation splatting. input: N x C x H x W, flow: N x 2 x H x W (pixels, x first). Returns N x C x H x W."""
    return Splatting(flow).sum(input)


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
