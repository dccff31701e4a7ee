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


# ---------------------------------------------------------------------------- issue 33: scale, fp16, compile, times

def _fresh_interpolator(golden, **kwargs):
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    return core.Interpolator(model, "cpu", still_threshold=0, **kwargs)


def _motion_calls(interpolator):
    """Record the feature size (h, w) of each motion estimator call of ``interpolator``'s model."""
    calls = []
    interpolator.model.motion_estimator.register_forward_hook(
        lambda module, inputs, output: calls.append(tuple(inputs[0].shape[-2:])))
    return calls


def test_scale_skips_the_finest_levels_and_keeps_the_coarsest(golden):
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    pyramid = lambda scale, h=720, w=1280, **kw: core.Interpolator(model, "cpu", scale=scale, **kw).pyramid_for(h, w)
    assert [pyramid(s) for s in (1, 0.5, 0.25, 0.125)] == [(5, 0), (5, 1), (5, 2), (5, 3)]
    assert [pyramid(s, 1080, 1920) for s in (1, 0.5, 0.25)] == [(6, 1), (6, 2), (6, 3)]
    assert [pyramid(s, 2160, 3840) for s in (1, 0.5, 0.25)] == [(7, 2), (7, 3), (7, 4)]
    assert pyramid(0.125, 256, 448) == (4, 3)          # (3, 3) would estimate no motion: one level more
    assert pyramid(0.5, 256, 448, pyr_level=4) == (4, 1)     # explicit levels: scale skips on top of them
    assert pyramid(0.5, 256, 448, pyr_level=4, nr_lvl_skipped=1) == (4, 2)
    assert pyramid(0.5, 720, 1280, nr_lvl_skipped=1) == (5, 2)
    with pytest.raises(InputError, match="pyr_level of at least 4"):
        core.Interpolator(model, "cpu", pyr_level=3, scale=0.125)
    for bad in (0.3, 2, 0, "half", None):
        with pytest.raises(InputError, match="scale must be 1, 0.5, 0.25 or 0.125"):
            core.Interpolator(model, "cpu", scale=bad)


def _small_pair(golden):
    """A 64 x 128 crop of the golden pair (pyramid (3, 0) by resolution, no padding)."""
    case = golden["cases"][0]
    return case["img0"][..., 32:96, 32:160].contiguous(), case["img1"][..., 32:96, 32:160].contiguous()


def test_scale_estimates_motion_at_the_reduced_resolution_and_synthesizes_at_full(golden):
    img0, img1 = _small_pair(golden)
    results = {}
    for scale in (1, 0.5, 0.25):
        interpolator = _fresh_interpolator(golden, scale=scale)
        calls = _motion_calls(interpolator)
        frames, flow = interpolator.interpolate_tensors(img0, img1, [0.5])
        # motion at levels 2 .. S (features at 1/4 of each level), the finest one at 1/4 of scale x 64 x 128
        assert calls == [(4, 8), (8, 16), (16, 32)][:3 - {1: 0, 0.5: 1, 0.25: 2}[scale]]
        assert frames[0].shape == img0.shape and flow.shape == (1, 4, 64, 128)
        results[scale] = frames[0]
    # 0.125 would leave (3, 3): the pyramid gets a level more, and motion is estimated at that level alone
    interpolator = _fresh_interpolator(golden, scale=0.125)
    calls = _motion_calls(interpolator)
    frames, _ = interpolator.interpolate_tensors(img0, img1, [0.5])
    assert calls == [(2, 4)] and frames[0].shape == img0.shape and torch.isfinite(frames[0]).all()
    # other frames than scale 1's (their quality: tools.benchmark_scale)
    for scale in (0.5, 0.25):
        assert (results[scale] - results[1]).abs().mean() > 1e-3 and 0 <= results[scale].min() <= results[scale].max() <= 1


def test_scale_one_is_todays_output_and_half_is_one_more_skipped_level(golden):
    img0, img1 = _small_pair(golden)
    run = lambda **kw: _fresh_interpolator(golden, channels_last=False, **kw).interpolate_tensors(img0, img1, [0.3])
    today, one, half = run(), run(scale=1.0), run(scale=0.5)
    model = core.load_weights(core.build_model("base"), golden["state_dict"]).eval()
    with torch.no_grad():                                      # the model itself, with the pyramid spelled out
        direct = model(img0, img1, 0.3, pyr_level=3, nr_lvl_skipped=0)
        direct_half = model(img0, img1, 0.3, pyr_level=3, nr_lvl_skipped=1)
    assert torch.equal(today[0][0], one[0][0]) and torch.equal(today[1], one[1])
    assert torch.equal(one[0][0], direct[0]) and torch.equal(one[1], direct[1])
    assert torch.equal(half[0][0], direct_half[0]) and torch.equal(half[1], direct_half[1])
    assert not torch.equal(half[0][0], today[0][0])


def test_per_pair_times_equal_each_pair_run_alone(golden):
    interpolator = _fresh_interpolator(golden)
    a, b = _small_pair(golden)
    img0, img1 = torch.cat([a, b.flip(-1)]), torch.cat([b, a.flip(-1)])
    times = [[0.25, 0.5, 0.9], [0.75, 0.5, 0.1]]
    frames, flow = interpolator.interpolate_tensors(img0, img1, times)
    assert len(frames) == 3 and frames[0].shape == img0.shape
    for n in range(2):
        alone, alone_flow = interpolator.interpolate_tensors(img0[n:n + 1], img1[n:n + 1], times[n])
        for k in range(3):
            assert (frames[k][n] - alone[k][0]).abs().max() < 1e-5, (n, k)
        assert (flow[n] - alone_flow[0]).abs().max() < 1e-4
    assert (frames[0][0] - frames[0][1]).abs().max() > 0.01   # the two pairs did get different times
    # the one-list form is the same times for every pair
    same, _ = interpolator.interpolate_tensors(img0, img1, [[0.3], [0.3]])
    plain, _ = interpolator.interpolate_tensors(img0, img1, [0.3])
    assert torch.equal(same[0], plain[0])
    for bad, message in (([[0.5, 0.5], [0.5]], "equal lengths"), ([[0.5]] * 3, "3 lists of times for 2 pairs"),
                         ([[0.5], [1.5]], r"\[0, 1\]"), ([[[0.5]]] * 2, "at most one list")):
        with pytest.raises(InputError, match=message):
            interpolator.interpolate_tensors(img0, img1, bad)


def test_per_pair_times_on_still_pairs_blend_with_each_pairs_time(golden):
    model = core.load_weights(core.build_model("base"), golden["state_dict"])
    interpolator = core.Interpolator(model, "cpu")
    frame = golden["cases"][0]["img0"]
    img0, img1 = torch.cat([frame, frame * 0.5]), torch.cat([frame, frame * 0.5 + 0.01 / 255])
    frames, _ = interpolator.interpolate_tensors(img0, img1, [[0.2], [0.7]])
    assert torch.allclose(frames[0][0], frame[0]) and torch.allclose(frames[0][1], 0.3 * img0[1] + 0.7 * img1[1])


def test_fp16_splats_in_float32_without_overflow():
    """Under float16 autocast the splatting sums (and their normaliser) are float32: 12288 pixels of value 10
    landing on one point sum to 122880 (float16 overflows at 65504), flows of +-1500 px stay finite."""
    from core.ops import Splatting, splat
    h, w = 96, 128
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    to_one_point = torch.stack([40.0 - xs, 30.0 - ys])[None]
    values = torch.full((1, 8, h, w), 10.0)
    with torch.autocast("cpu", dtype=torch.float16):
        half_flow, half_values = to_one_point.half(), values.half()
        summed = Splatting(half_flow).sum(half_values)
        averaged = splat(half_values, half_flow, mode="average")
        far = splat(half_values, (torch.randn(1, 2, h, w) * 1500).half(), mode="average")
    assert summed.dtype == averaged.dtype == far.dtype == torch.float32
    assert summed[0, :, 30, 40].tolist() == [h * w * 10.0] * 8 and summed.sum().item() == h * w * 10.0 * 8
    assert torch.equal(averaged[0, :, 30, 40], torch.full((8,), 10.0))
    assert torch.isfinite(summed).all() and torch.isfinite(averaged).all() and torch.isfinite(far).all()


def test_fp16_runs_on_the_cpu_with_float32_splats_and_stays_close(golden, monkeypatch):
    from core.ops import softsplat
    dtypes = []
    original = softsplat.Splatting.sum

    def recording_sum(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        dtypes.append(result.dtype)
        return result

    monkeypatch.setattr(softsplat.Splatting, "sum", recording_sum)
    case = golden["cases"][0]
    interpolator = _fresh_interpolator(golden, precision="fp16")
    frame, flow = interpolator.interpolate_tensors(case["img0"], case["img1"], [0.5])
    assert frame[0].dtype == flow.dtype == torch.float32
    assert dtypes and set(dtypes) == {torch.float32}
    assert (frame[0] - case["interp_img"]).abs().mean() < 0.01 and torch.isfinite(frame[0]).all()
    # large motion at a deeper pyramid: the whole frame shifted by 40 px, still finite
    shifted = torch.roll(case["img0"], 40, -1)
    big, big_flow = interpolator.interpolate_tensors(case["img0"], shifted, [0.5])
    assert torch.isfinite(big[0]).all() and torch.isfinite(big_flow).all()
    with pytest.raises(InputError, match="precision must be fp32, bf16 or fp16"):
        _fresh_interpolator(golden, precision="half")


def test_compiled_interpolator_equals_eager(golden):
    """Motion and synthesis are captured by torch.compile, once for all times (t is passed as a tensor). A
    counting backend runs the captured graphs eagerly (Inductor on the whole model: tests/test_compile.py; on the
    Interpolator it takes minutes on a 2-core CPU)."""
    torch._dynamo.reset()
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    case = golden["cases"][0]
    img0, img1 = case["img0"][..., :64, :64], case["img1"][..., :64, :64]
    eager = _fresh_interpolator(golden, pyr_level=1)
    compiled = _fresh_interpolator(golden, pyr_level=1, compile=counting_backend)
    try:
        for times in ([0.5, 0.3], [0.7]):                      # the second call compiles nothing new
            ours, our_flow = compiled.interpolate_tensors(img0, img1, times)
            if times == [0.5, 0.3]:
                captured = len(graphs)
            reference, flow = eager.interpolate_tensors(img0, img1, times)
            for a, b in zip(ours, reference):
                assert (a - b).abs().max() < 1e-5
            assert (our_flow - flow).abs().max() < 1e-4
        assert captured >= 2 and len(graphs) == captured
        called = []
        compiled.model.motion_estimator.register_forward_hook(lambda *a: called.append(1))
        compiled.interpolate_tensors(img0, img1, [0.5])
        assert called == []            # the compiled graphs ran, not the module's eager forward
    finally:
        torch._dynamo.reset()
    with pytest.raises(InputError, match="compile"):
        _fresh_interpolator(golden, compile=3)


def test_cli_scale_precision_and_compile_options():
    import argparse
    from core.cli import UsageError, add_model_arguments, interpolator_options
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    options = interpolator_options(parser.parse_args(["--scale", "0.25", "--precision", "fp16", "--compile"]))
    assert options["scale"] == 0.25 and options["precision"] == "fp16" and options["compile"] is True
    defaults = interpolator_options(parser.parse_args([]))
    assert defaults["scale"] == 1.0 and "compile" not in defaults and defaults["precision"] == "fp32"
    with pytest.raises(UsageError, match="--scale must be 1, 0.5, 0.25 or 0.125, got 0.3"):
        interpolator_options(parser.parse_args(["--scale", "0.3"]))
