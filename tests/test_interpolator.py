"""The high-level interpolator: formats, padding, pyramid choice, motion reuse, input checks."""
import numpy as np
import pytest
import torch

import core
from core.frames import pad_multiple
from core.interpolator import InputError, choose_pyramid


@pytest.fixture(scope="module")
def interpolator(golden):
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    return core.Interpolator(model, device="cpu")


def _frames(golden):
    case = golden["cases"][0]
    to_np = lambda t: (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return to_np(case["img0"]), to_np(case["img1"])


def test_paper_pyramid_choices():
    assert choose_pyramid(256, 448) == (3, 0)       # Vimeo90K
    assert choose_pyramid(720, 1280) == (5, 0)      # SNU-FILM
    assert choose_pyramid(2160, 4096) == (7, 2)     # X-TEST
    assert pad_multiple(3) == 64 and pad_multiple(7) == 256


def test_padded_result_equals_direct_model_call(golden, interpolator):
    case = golden["cases"][0]                       # 128 x 192: already a multiple of 64, no padding
    out = interpolator.interpolate(case["img0"], case["img1"], 0.5)
    assert (out - case["interp_img"]).abs().max() <= 2e-4


def test_still_pairs_return_the_picture_without_the_network(golden, monkeypatch):
    """One frame twice: every time step is that frame exactly and the flow is zero (the network is not run; it
    would only approximate the frame); in a batch the moving pair is untouched; still_threshold 0 runs it."""
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    case = golden["cases"][0]
    frame, other = case["img0"], case["img1"]
    plain = core.Interpolator(model, device="cpu", still_threshold=0)
    network_frame = plain.interpolate_tensors(frame, frame, [0.5])[0][0]
    assert (network_frame - frame).abs().max() > 1e-3          # what the rule is for
    interpolator = core.Interpolator(model, device="cpu")
    noisy = frame + 0.1 / 255 * torch.sign(torch.randn_like(frame))   # mean difference 0.1 levels: still
    calls = []
    monkeypatch.setattr(model, "estimate_motion", lambda *a: calls.append(1))
    frames, flow = interpolator.interpolate_tensors(frame, noisy, [0.25, 0.5])
    assert calls == [] and flow.shape == (1, 4, *frame.shape[-2:]) and flow.abs().max() == 0
    assert torch.allclose(frames[0], 0.75 * frame + 0.25 * noisy) and torch.allclose(frames[1], (frame + noisy) / 2)
    monkeypatch.undo()
    batch0, batch1 = torch.cat([frame, frame]), torch.cat([frame, other])
    frames, flow = interpolator.interpolate_tensors(batch0, batch1, [0.5])
    moving, moving_flow = plain.interpolate_tensors(frame, other, [0.5])
    assert torch.equal(frames[0][0], frame[0]) and flow[0].abs().max() == 0
    assert (frames[0][1] - moving[0][0]).abs().max() < 1e-5 and (flow[1] - moving_flow[0]).abs().max() < 1e-4
    with pytest.raises(InputError, match="still_threshold"):
        core.Interpolator(model, device="cpu", still_threshold=-1)


def test_odd_size_is_padded_with_half_grey_and_cropped(golden, interpolator):
    case = golden["cases"][0]
    img0, img1 = case["img0"][..., :101, :157], case["img1"][..., :101, :157]
    out, flow = interpolator.interpolate(img0, img1, 0.5, return_flow=True)
    assert out.shape == (1, 3, 101, 157) and flow.shape == (1, 4, 101, 157)
    padded0 = torch.full((1, 3, 128, 192), 0.5)
    padded1 = padded0.clone()
    padded0[..., :101, :157], padded1[..., :101, :157] = img0, img1
    with torch.no_grad():
        direct = interpolator.model(padded0, padded1, 0.5)[0][..., :101, :157]
    assert torch.allclose(out, direct, atol=1e-6)


def test_formats_give_the_same_frame(golden, interpolator):
    f0, f1 = _frames(golden)
    rgb = interpolator.interpolate(f0, f1, 0.5)
    assert rgb.dtype == np.uint8 and rgb.shape == f0.shape
    sixteen = interpolator.interpolate(f0.astype(np.uint16) * 257, f1.astype(np.uint16) * 257, 0.5)
    assert sixteen.dtype == np.uint16 and np.abs(sixteen / 257.0 - rgb).max() <= 1.0
    rgba = interpolator.interpolate(np.dstack([f0, np.full_like(f0[..., :1], 7)]),
                                    np.dstack([f1, np.zeros_like(f1[..., :1])]), 0.5)
    assert np.array_equal(rgba, rgb)
    grey0, grey1 = f0[..., 1], f1[..., 1]
    grey_out = interpolator.interpolate(grey0, grey1, 0.5)
    grey_rgb = interpolator.interpolate(np.dstack([grey0] * 3), np.dstack([grey1] * 3), 0.5)
    assert np.array_equal(grey_out, grey_rgb)


def test_several_times_reuse_motion(golden, interpolator):
    case03 = next(c for c in golden["cases"] if c["time_period"] == 0.3)
    case05 = golden["cases"][0]
    at03, at05 = interpolator.interpolate(case05["img0"], case05["img1"], [0.3, 0.5])
    assert (at03 - case03["interp_img"]).abs().max() <= 2e-4
    assert (at05 - case05["interp_img"]).abs().max() <= 2e-4


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan")])
def test_time_outside_unit_interval_is_rejected(interpolator, t):
    x = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        interpolator.interpolate(x, x, t)


def test_bad_inputs_are_rejected(interpolator):
    with pytest.raises(InputError, match="sizes differ"):
        interpolator.interpolate(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 34, 3), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        bad = torch.zeros(1, 3, 32, 32)
        bad[0, 0, 0, 0] = float("nan")
        interpolator.interpolate(bad, torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="RGBA"):
        interpolator.interpolate(np.zeros((32, 32, 5), np.uint8), np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(InputError, match="3 x H x W"):
        interpolator.interpolate(torch.zeros(1, 4, 32, 32), torch.zeros(1, 4, 32, 32))


def test_no_checkpoint_for_other_sizes():
    with pytest.raises(InputError, match="no checkpoint ships"):
        core.Interpolator.from_checkpoint(model_size="large")


def test_low_memory_strips_and_layouts_give_the_same_frame(golden, monkeypatch):
    import core.interpolator as interpolator_module
    monkeypatch.setattr(interpolator_module, "STRIP_ROWS", 32)
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    case = golden["cases"][1]
    outputs = [core.Interpolator(model, "cpu", low_memory=low, channels_last=cl).interpolate(
        case["img0"], case["img1"], 0.3) for low, cl in ((False, False), (True, True), (True, False))]
    for out in outputs:
        assert (out - case["interp_img"]).abs().max() <= 2e-4


def test_bf16_fast_mode_stays_close(golden):
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    case = golden["cases"][0]
    fast = core.Interpolator(model, "cpu", precision="bf16").interpolate(case["img0"], case["img1"], 0.5)
    assert fast.dtype == torch.float32 and fast.shape == case["interp_img"].shape
    assert (fast - case["interp_img"]).abs().mean() < 0.02
    with pytest.raises(InputError, match="precision"):
        core.Interpolator(model, "cpu", precision="fp8")


def test_only_small_frames_switch_the_allocator_to_keeping_freed_memory(interpolator, monkeypatch):
    calls = []
    monkeypatch.setattr(core.device, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(core.device, "KEEP_MEMORY_PIXELS", 64 * 64)
    big = torch.rand(1, 3, 96, 96)                    # padded to 128 x 128: above the limit
    interpolator.interpolate_tensors(big, big.flip(-1))
    assert calls == []
    small = torch.rand(1, 3, 60, 50)                  # padded to 64 x 64
    interpolator.interpolate_tensors(small, small.flip(-1))
    assert calls == [1]
