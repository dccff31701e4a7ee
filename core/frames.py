"""Reading, converting, padding and writing frames: the one module every other converts frames with.

Frames inside the project are RGB. Arrays are H x W x 3 (numpy: uint8, uint16 or float in [0, 1]); tensors are
[N x] 3 x H x W float32 in [0, 1] (or uint8 where frames are shipped between processes). On disk any 8- or 16-bit
PNG/JPEG works: grayscale is replicated to three channels, an alpha channel is dropped, 16-bit values are scaled
to [0, 1].
"""
import os
import re

import cv2
import numpy as np
import torch
import torch.nn.functional as F


class FrameError(ValueError):
    """A frame cannot be read or has a form we cannot use."""


def read_image(path):
    """Read an image file as an RGB H x W x 3 numpy array (uint8 or uint16, as stored)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FrameError(f"image not found: {path}")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FrameError(f"cannot read image (not an image or corrupt): {path}")
    try:
        return to_rgb(image, bgr=True)
    except FrameError as error:
        raise FrameError(f"{path}: {error}") from None


def to_rgb(image, bgr=False):
    """H x W, H x W x 1, H x W x 3 or H x W x 4 array -> H x W x 3 (alpha dropped, grey replicated)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise FrameError(f"expected a grayscale, RGB or RGBA image, got an array of shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if bgr else image)


def to_float(image):
    """uint8 / uint16 / float H x W x 3 array -> float32 array in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32)
    raise FrameError(f"unsupported image dtype {image.dtype}")


def to_uint8(image):
    """Grey, RGB or RGBA uint8 / uint16 / float image -> H x W x 3 uint8, rounded (floats clipped to [0, 1])."""
    image = to_rgb(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return from_float(to_float(image), np.uint8)


def from_float(image, dtype):
    """Float array in [0, 1] -> ``dtype``: uint8 or uint16 (clipped, rounded), else float32."""
    dtype = np.dtype(dtype)
    if dtype in (np.uint8, np.uint16):
        scale = float(np.iinfo(dtype).max)
        return (np.clip(image, 0.0, 1.0) * scale + 0.5).astype(dtype)
    return image.astype(np.float32)


def image_to_tensor(image, keep_uint8=False):
    """Grey, RGB or RGBA array (uint8, uint16 or float) -> 1 x 3 x H x W float32 tensor in [0, 1]; with
    ``keep_uint8`` a uint8 array stays a uint8 tensor (4x smaller to ship from data workers; see
    :func:`tensor_to_float`)."""
    image = to_rgb(image)
    if keep_uint8 and image.dtype == np.uint8:
        return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()
    return torch.from_numpy(to_float(image)).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_float(tensor):
    """uint8 tensor -> float32 / 255; other tensors -> float32."""
    return tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor.float()


def tensor_to_image(tensor):
    """1 x 3 x H x W or 3 x H x W float tensor in [0, 1] -> H x W x 3 uint8 RGB array (rounded)."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


def natural_key(name):
    """Sort key for file and folder names: digit runs compare as numbers ("frame2" before "frame10"), letters
    ignoring case, ties broken by the name itself (so the order is total)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)], name


def write_image(path, image):
    """Write an RGB H x W x 3 uint8 array (or a tensor, converted) to ``path``; creates the folder."""
    if isinstance(image, torch.Tensor):
        image = tensor_to_image(image)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(os.fspath(path), np.ascontiguousarray(image[:, :, ::-1])):
        raise FrameError(f"cannot write image {path}")


def pad_multiple(pyr_level):
    """Frames are padded to a multiple of this: 64 as in the benchmarks, more for deep pyramids."""
    return max(64, 2 ** (pyr_level + 1))


def pad_to_multiple(img, multiple, value=0.5):
    """Pad N x C x H x W on the right and bottom with ``value`` so H and W are multiples of ``multiple``."""
    h, w = img.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return img
    return F.pad(img, (0, pad_w, 0, pad_h), value=value)
