"""Training losses (Charbonnier, census, flow supervision) and the learning-rate schedule."""
import math

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from core.losses import LOSS_TYPES, census, charbonnier, downsample_flow, downsample_reference, flow_supervision, \
    frame_loss
from core.schedule import learning_rate


def photo(size=96):
    """A natural RGB photo (skimage's astronaut, area-downscaled) as a 1 x 3 x size x size float64 tensor."""
    image = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255.0


# ------------------------------------------------------------------------------------------- Charbonnier


def test_charbonnier_hand_computed():
    prediction = torch.tensor([[0.0, 1.0], [0.5, 0.25]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0], [0.5, 0.75]], dtype=torch.float64)
    # differences 0, 1, 0, -0.5 -> sqrt(d^2 + 1e-6)
    expected = (1e-3 + math.sqrt(1 + 1e-6) + 1e-3 + math.sqrt(0.25 + 1e-6)) / 4
    assert charbonnier(prediction, target).item() == pytest.approx(expected, rel=1e-12)
    assert charbonnier(prediction, target, eps=0.0).item() == pytest.approx(1.5 / 4, rel=1e-12)


def test_charbonnier_of_identical_images_is_sqrt_eps():
    image = photo(32)
    assert charbonnier(image, image).item() == pytest.approx(1e-3, rel=1e-9)


# ------------------------------------------------------------------------------------------------ census


def test_census_zero_for_identical_images():
    image = photo(48)
    assert census(image, image).item() == 0.0


def test_census_ignores_a_constant_brightness_change():
    image = photo(48)
    shifted = census(image + 0.1, image).item()
    assert shifted == pytest.approx(0.0, abs=1e-9)
    # while the Charbonnier term sees the full difference
    assert charbonnier(image + 0.1, image).item() == pytest.approx(math.sqrt(0.01 + 1e-6), rel=1e-9)


def test_census_positive_and_increasing_with_a_shift():
    big = photo(128)
    base = big[..., 20:84, 20:84]
    losses = [census(big[..., 20:84, 20 + s:84 + s], base).item() for s in (1, 2, 4, 8)]
    assert losses[0] > 0
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_census_has_finite_gradients():
    image = photo(32).float()
    prediction = image.roll(1, -1).requires_grad_()
    census(prediction, image).backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0


def census_by_autograd(prediction, target, patch_size=7):
    """The census loss spelled out pixel by pixel with explicit shifts, differentiated by autograd."""
    def signature(image):
        grey = 0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]
        r = patch_size // 2
        padded = torch.nn.functional.pad(grey, (r, r, r, r))
        h, w = grey.shape[-2:]
        diffs = torch.cat([padded[..., dy:dy + h, dx:dx + w] - grey
                           for dy in range(patch_size) for dx in range(patch_size)], 1)
        return diffs / torch.sqrt(0.81 + diffs ** 2)

    d = (signature(prediction) - signature(target)) ** 2
    r = patch_size // 2
    return (d / (0.1 + d)).sum(1)[..., r:-r, r:-r].mean()


def test_census_value_and_gradient_match_autograd_of_the_formula():
    target = photo(40)
    prediction = (target.roll(2, -1) * 0.9 + 0.05).requires_grad_()
    reference = prediction.detach().clone().requires_grad_()
    loss, expected = census(prediction, target), census_by_autograd(reference, target)
    loss.backward(), expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(prediction.grad, reference.grad, rtol=1e-9, atol=1e-15)
    assert torch.autograd.gradcheck(lambda p: census(p, target[..., :12, :12]), prediction[..., :12, :12].detach()
                                    .clone().requires_grad_())


def test_frame_loss_types():
    prediction, target = photo(32).float(), photo(32).float().roll(2, -1)
    total, terms = frame_loss(prediction, target, "charbonnier+census")
    assert set(terms) == {"charbonnier", "census"}
    assert total.item() == pytest.approx(terms["charbonnier"].item() + terms["census"].item())
    total, terms = frame_loss(prediction, target, "charbonnier")
    assert set(terms) == {"charbonnier"}
    total, terms = frame_loss(prediction, target, "l1")
    assert total.item() == pytest.approx((prediction - target).abs().mean().item())
    assert "l1" in LOSS_TYPES
    with pytest.raises(ValueError, match="unknown loss type"):
        frame_loss(prediction, target, "l2")


# ------------------------------------------------------------------------------------------ flow losses


def test_downsample_flow_rescales_values():
    flow = torch.full((1, 4, 32, 32), 8.0)
    assert torch.allclose(downsample_flow(flow, (8, 8)), torch.full((1, 4, 8, 8), 2.0))


def test_flow_supervision():
    reference = torch.randn(2, 4, 32, 32)
    levels = [downsample_flow(reference, (8, 8)), downsample_flow(reference, (16, 16)), reference]
    valid = torch.ones(2, 2, 32, 32)
    assert flow_supervision(levels, reference, valid).item() == pytest.approx(1e-3, rel=1e-3)
    # one full-resolution pixel of error everywhere, on every level
    off = [f + 1.0 / (32 // f.shape[-1]) for f in levels]
    assert flow_supervision(off, reference, valid).item() == pytest.approx(1.0, rel=1e-3)
    # samples without a reference do not count
    assert flow_supervision(off, reference, torch.zeros(2, 2, 32, 32)).item() == 0.0
    mixed = [torch.cat([f[:1], f[1:] + 10]) for f in off]
    per_sample = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1).expand(2, 2, 32, 32)
    assert flow_supervision(mixed, reference, per_sample).item() == pytest.approx(1.0, rel=1e-3)


def test_flow_supervision_ignores_invalid_pixels():
    """Where the reference does not hold (here: a wrong reference on the left half, the backward direction of the
    right half) the estimate is not compared with it; coarse cells average the valid pixels only."""
    truth = torch.randn(1, 4, 32, 32)
    levels = [downsample_flow(truth, (8, 8)), downsample_flow(truth, (16, 16)), truth]
    reference = truth.clone()
    reference[..., :16] += 50.0
    reference[:, 2:4, :, 16:] -= 30.0
    valid = torch.zeros(1, 2, 32, 32)
    valid[:, 0, :, 16:] = 1.0
    assert flow_supervision(levels, reference, valid).item() == pytest.approx(1e-3, rel=1e-3)
    # one full-resolution pixel of error: the mean over the valid pixels only
    off = [f + 1.0 / (32 // f.shape[-1]) for f in levels]
    assert flow_supervision(off, truth, valid).item() == pytest.approx(1.0, rel=1e-3)
    ref, weight = downsample_reference(reference, valid, (8, 8))
    assert torch.allclose(ref[:, 0:2, :, 4:], levels[0][:, 0:2, :, 4:], atol=1e-5)
    assert weight[:, 0:2, :, 4:].eq(1).all() and weight[:, 0:2, :, :4].eq(0).all() and weight[:, 2:4].eq(0).all()


# -------------------------------------------------------------------------------------------- schedule


def test_warmup_is_linear_and_reaches_init_lr():
    init, low, warmup, total = 2e-4, 2e-5, 100, 1000
    assert learning_rate(0, total, init, low, warmup) == pytest.approx(init / warmup)
    assert learning_rate(49, total, init, low, warmup) == pytest.approx(init * 50 / warmup)
    values = [learning_rate(s, total, init, low, warmup) for s in range(warmup)]
    assert np.allclose(np.diff(values), init / warmup)
    assert learning_rate(warmup - 1, total, init, low, warmup) == pytest.approx(init)   # end of warm-up
    assert learning_rate(warmup, total, init, low, warmup) == pytest.approx(init)       # cosine starts at init


def test_cosine_midpoint_and_floor():
    init, low, warmup, total = 2e-4, 2e-5, 100, 1100
    assert learning_rate(600, total, init, low, warmup) == pytest.approx((init + low) / 2)
    assert learning_rate(total, total, init, low, warmup) == pytest.approx(low)
    assert learning_rate(5 * total, total, init, low, warmup) == pytest.approx(low)      # stays at the floor
    values = [learning_rate(s, total, init, low, warmup) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert min(values) >= low


def test_schedule_without_warmup():
    assert learning_rate(0, 10, 1.0, 0.0, 0) == pytest.approx(1.0)
    assert learning_rate(5, 10, 1.0, 0.0, 0) == pytest.approx(0.5)


def _features_and_shifted(dx, dy):
    """Random 1/4-resolution features and the same features moved by (dx, dy) feature pixels (frame 1)."""
    torch.manual_seed(0)
    feat0 = torch.randn(1, 16, 12, 12)
    feat1 = torch.roll(feat0, shifts=(dy, dx), dims=(2, 3))
    return feat0, feat1


def test_matching_loss_prefers_the_true_displacement():
    from core.losses import matching
    feat0, feat1 = _features_and_shifted(2, -1)
    valid = torch.ones(1, 2, 48, 48)
    # reference flow at the frames' resolution (4x the features): (8, -4) pixels is (2, -1) feature pixels
    true_flow = torch.zeros(1, 4, 48, 48)
    true_flow[:, 0], true_flow[:, 1] = 8.0, -4.0
    wrong_flow = torch.zeros(1, 4, 48, 48)
    wrong_flow[:, 0], wrong_flow[:, 1] = -8.0, 4.0
    right, wrong = matching(feat0, feat1, true_flow, valid), matching(feat0, feat1, wrong_flow, valid)
    # against log(81), the loss of a flat cost volume: well below at the true displacement, above at a wrong one
    assert right < 0.5 * math.log(81) < math.log(81) < wrong
    # no sample with a reference, or every displacement outside the +-4 window: nothing to learn from
    assert matching(feat0, feat1, true_flow, torch.zeros(1, 2, 48, 48)) == 0
    assert matching(feat0, feat1, true_flow * 10, valid) == 0
    # only feature pixels whose reference mostly holds count: the wrong displacement, where invalid, is ignored
    half = wrong_flow.clone()
    half[..., 24:] = true_flow[..., 24:]
    half_valid = valid.clone()
    half_valid[..., :24] = 0
    masked = matching(feat0, feat1, half, half_valid)
    assert masked == pytest.approx(matching(feat0, feat1, true_flow, half_valid).item())
    assert masked < matching(feat0, feat1, half, valid)


def test_matching_loss_gradient_sharpens_the_match():
    from core.losses import matching
    feat0, feat1 = _features_and_shifted(1, 1)
    feat0 = (0.05 * feat0).requires_grad_()        # weak features: a flat cost volume, a high loss
    flow = torch.zeros(1, 4, 48, 48)
    flow[:, 0:2] = 4.0
    before = matching(feat0, 0.05 * feat1, flow, torch.ones(1, 2, 48, 48))
    before.backward()
    with torch.no_grad():
        after = matching(feat0 - 50.0 * feat0.grad, 0.05 * feat1, flow, torch.ones(1, 2, 48, 48))
    assert after < before
