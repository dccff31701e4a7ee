"""Reference interpolators (core.baselines) on cases with a known answer: a textured frame moving by a whole
number of pixels, whose true in-between frames are the same texture shifted part of the way."""
import os
import sys

import cv2
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from core import metrics  # noqa: E402
from core.baselines import METHODS, build_baseline  # noqa: E402

H, W, SHIFT, MARGIN = 96, 128, 8, 16


def _texture():
    """Smooth random texture, 3 x H x (W + SHIFT) float in [0, 1]."""
    rng = np.random.default_rng(0)
    small = rng.random((H // 4, (W + SHIFT) // 4, 3)).astype(np.float32)
    big = cv2.resize(small, (W + SHIFT, H), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return torch.from_numpy(big).permute(2, 0, 1)


def _moving_pair():
    """Frame at time s shows the texture moved right by s * SHIFT pixels (window starting at SHIFT - s*SHIFT)."""
    texture = _texture()
    window = lambda offset: texture[:, :, SHIFT - offset:SHIFT - offset + W][None]
    return window, window(0), window(SHIFT)


def _interior_psnr(prediction, truth):
    crop = lambda x: x[..., MARGIN:-MARGIN, MARGIN:-MARGIN]
    return metrics.psnr(crop(prediction), crop(truth)).item()


def test_methods_are_listed_and_unknown_ones_rejected():
    assert set(METHODS) >= {"upr", "average", "dis", "rife", "minterpolate"}
    with pytest.raises(ValueError, match="unknown method"):
        build_baseline("optical-magic")
    with pytest.raises(ValueError, match="--rife_dir"):
        build_baseline("rife")


def test_average_is_the_time_weighted_blend():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 8, 8, generator=generator)
    (out,), _ = build_baseline("average").interpolate_tensors(a, b, [0.25])
    assert torch.allclose(out, 0.75 * a + 0.25 * b)


@pytest.mark.parametrize("method", ["dis", "minterpolate"])
def test_flow_methods_move_a_translated_texture_part_of_the_way(method):
    window, frame0, frame1 = _moving_pair()
    times = [0.25, 0.5, 0.75]
    outputs, _ = build_baseline(method).interpolate_tensors(frame0, frame1, times)
    assert len(outputs) == 3
    for t, out in zip(times, outputs):
        assert out.shape == frame0.shape and out.dtype == torch.float32
        truth = window(round(t * SHIFT))
        blend = (1 - t) * frame0 + t * frame1
        assert _interior_psnr(out, truth) > 30.0
        assert _interior_psnr(out, truth) > _interior_psnr(blend, truth) + 8.0


def test_minterpolate_keeps_still_frames_and_rejects_unreachable_times():
    _, frame0, _ = _moving_pair()
    interpolator = build_baseline("minterpolate")
    (out,), _ = interpolator.interpolate_tensors(frame0, frame0, [0.5])
    assert (out - frame0).abs().max().item() < 3 / 255          # 8-bit RGB -> YUV 4:4:4 -> RGB round trip
    with pytest.raises(ValueError, match="k/m"):
        interpolator.interpolate_tensors(frame0, frame0, [0.123456])
