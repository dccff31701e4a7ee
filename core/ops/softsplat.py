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

Backends, chosen in one place (:func:`splat_sum`):
    "torch"  pure PyTorch (index_add), runs on CPU, CUDA and MPS; the reference.
    "cupy"   a CUDA kernel (``softsplat_cupy.py``) for CUDA tensors when CuPy is importable.
    "auto"   (default) cupy for CUDA tensors when available, torch otherwise.
Force one with :func:`set_backend` or the environment variable ``UPR_SPLAT_BACKEND=torch|cupy|auto``.
"""
import os

import torch

_MODES = ("summation", "average", "linear", "softmax")
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_backend = os.environ.get("UPR_SPLAT_BACKEND", "auto")


def set_backend(name):
    """Select the splatting backend: "auto", "torch" or "cupy"."""
    global _backend
    if name not in ("auto", "torch", "cupy"):
        raise ValueError(f"unknown splatting backend {name!r}; use auto, torch or cupy")
    _backend = name


def get_backend():
    return _backend


def _use_cupy(tensor):
    if _backend == "torch" or not tensor.is_cuda:
        if _backend == "cupy" and not tensor.is_cuda:
            raise RuntimeError("splatting backend 'cupy' was forced but the tensor is not on a CUDA device")
        return False
    from . import softsplat_cupy
    if softsplat_cupy.available():
        return True
    if _backend == "cupy":
        raise RuntimeError("splatting backend 'cupy' was forced but CuPy is not importable")
    return False


def _corner_indices_and_weights(flow):
    """Flat target index and bilinear weight of each source pixel for its four corners.

    flow: N x 2 x H x W, pixels, channel 0 = x. Returns (index, weight), both 4 x N x H x W;
    index is into the flattened N*H*W output, weight is 0 (and index 0) where the corner is off-frame.
    """
    n, _, h, w = flow.shape
    grid_x = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    grid_y = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    target_x = grid_x + flow[:, 0]
    target_y = grid_y + flow[:, 1]
    x0 = torch.floor(target_x)
    y0 = torch.floor(target_y)
    frac_x = target_x - x0
    frac_y = target_y - y0
    x0 = x0.long()
    y0 = y0.long()
    batch_offset = (torch.arange(n, device=flow.device) * (h * w)).view(n, 1, 1)

    indices, weights = [], []
    for dy, wy in ((0, 1 - frac_y), (1, frac_y)):
        for dx, wx in ((0, 1 - frac_x), (1, frac_x)):
            cx, cy = x0 + dx, y0 + dy
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            weights.append(wx * wy * inside)
            indices.append(torch.where(inside, batch_offset + cy * w + cx, 0))
    return torch.stack(indices), torch.stack(weights)


def _splat_sum_torch(input, flow):
    n, c, h, w = input.shape
    index, weight = _corner_indices_and_weights(flow)
    # Channels last so that each index_add row is one pixel's C values.
    values = input.permute(0, 2, 3, 1).reshape(1, n * h * w, c)
    source = (values * weight.reshape(4, n * h * w, 1)).reshape(4 * n * h * w, c)
    output = input.new_zeros(n * h * w, c).index_add_(0, index.reshape(-1), source)
    return output.view(n, h, w, c).permute(0, 3, 1, 2).contiguous()


def splat_sum(input, flow):
    """Summation splatting. input: N x C x H x W, flow: N x 2 x H x W (pixels, x first). Returns N x C x H x W."""
    if input.shape[0] != flow.shape[0] or input.shape[2:] != flow.shape[2:] or flow.shape[1] != 2:
        raise ValueError(f"splat: input {tuple(input.shape)} and flow {tuple(flow.shape)} do not match")
    if input.dtype in _LOW_PRECISION or flow.dtype in _LOW_PRECISION:
        # under bf16/fp16 autocast: accumulate in float32, the next conv casts back down
        input, flow = input.float(), flow.float()
    if _use_cupy(input):
        from . import softsplat_cupy
        return softsplat_cupy.splat_sum(input, flow)
    return _splat_sum_torch(input, flow)


def splat(input, flow, metric=None, mode="average"):
    """Forward-warp ``input`` (N x C x H x W) by ``flow`` (N x 2 x H x W, pixels) in the given mode.

    ``metric`` (N x 1 x H x W) is required for "linear" and "softmax" and ignored otherwise.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown splatting mode {mode!r}; use one of {_MODES}")
    if mode == "summation":
        return splat_sum(input, flow)
    if mode == "average":
        weight = input.new_ones(input.shape[0], 1, *input.shape[2:])
    else:
        if metric is None:
            raise ValueError(f"splatting mode {mode!r} needs a metric")
        weight = metric if mode == "linear" else torch.exp(metric)
    if mode == "average":
        splatted = splat_sum(torch.cat([input, weight], 1), flow)
    else:
        splatted = splat_sum(torch.cat([input * weight, weight], 1), flow)
    normaliser = splatted[:, -1:]
    normaliser = torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)
    return splatted[:, :-1] / normaliser
