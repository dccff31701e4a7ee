"""The model against the original's golden outputs and the official state-dict layout."""
import pytest
import torch

import core
from conftest import fixture_path

PARAMETER_COUNTS = {"base": 1_653_961, "large": 3_701_865, "LARGE": 6_563_721}


def read_manifest(size):
    entries = []
    with open(fixture_path(f"upr_{size}_keys.tsv")) as f:
        for line in f:
            key, shape = line.rstrip("\n").split("\t")
            entries.append((key, tuple(int(d) for d in shape.split("x"))))
    return entries


@pytest.mark.parametrize("size", ["base", "large", "LARGE"])
def test_state_dict_matches_official_manifest(size):
    model = core.build_model(size)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == read_manifest(size)
    assert sum(p.numel() for p in model.parameters()) == PARAMETER_COUNTS[size]


@pytest.fixture(scope="module")
def golden_model(golden):
    model = core.build_model("base")
    core.load_weights(model, golden["state_dict"])   # keys carry "module.", as official files do
    return model.eval()


def _check_case(case, outputs):
    interp, bi_flow, extra = outputs
    assert (interp - case["interp_img"]).abs().max() <= 2e-4
    assert (bi_flow - case["bi_flow"]).abs().max() <= 2e-3
    assert len(extra["interp_imgs"]) == len(case["interp_imgs"])
    for ours, ref in zip(extra["interp_imgs"], case["interp_imgs"]):
        assert ours.shape == ref.shape and (ours - ref).abs().max() <= 2e-4
    for ours, ref in zip(extra["bi_flows"], case["bi_flows"]):
        assert ours.shape == ref.shape and (ours - ref).abs().max() <= 2e-3


def test_golden_cases(golden, golden_model):
    assert len(golden["cases"]) == 4
    with torch.no_grad():
        for case in golden["cases"]:
            outputs = golden_model(case["img0"], case["img1"], case["time_period"],
                                   pyr_level=case["pyr_level"], nr_lvl_skipped=case["nr_lvl_skipped"])
            _check_case(case, outputs)


def test_golden_case_through_constructor_defaults(golden):
    case = next(c for c in golden["cases"] if c["nr_lvl_skipped"] > 0)
    model = core.build_model("base", pyr_level=case["pyr_level"], nr_lvl_skipped=case["nr_lvl_skipped"])
    core.load_weights(model, golden["state_dict"])
    with torch.no_grad():
        _check_case(case, model.eval()(case["img0"], case["img1"], case["time_period"]))


def test_motion_reuse_and_per_sample_time(golden, golden_model):
    case = golden["cases"][0]
    img0 = torch.cat([case["img0"]] * 2)
    img1 = torch.cat([case["img1"]] * 2)
    with torch.no_grad():
        levels = golden_model.estimate_motion(img0, img1, 3, 0)
        at_03 = golden_model.synthesize(levels, 0.3)[0]
        at_05 = golden_model.synthesize(levels, 0.5)[0]
        mixed = golden_model(img0, img1, torch.tensor([0.3, 0.5]))[0]
    reference_03 = next(c for c in golden["cases"] if c["time_period"] == 0.3)["interp_img"]
    assert (at_03[:1] - reference_03).abs().max() <= 2e-4
    assert (at_05[:1] - case["interp_img"]).abs().max() <= 2e-4
    assert torch.allclose(mixed[0], at_03[0], atol=1e-6) and torch.allclose(mixed[1], at_05[1], atol=1e-6)


def test_forward_returns_the_input_frames_quarter_resolution_features(golden, golden_model):
    case = next(c for c in golden["cases"] if c["nr_lvl_skipped"] > 0)
    for skipped in (0, case["nr_lvl_skipped"]):
        with torch.no_grad():
            _, _, extra = golden_model(case["img0"], case["img1"], 0.5, case["pyr_level"], skipped)
            expected = [golden_model.feat_pyramid(img)[2] for img in (case["img0"], case["img1"])]
        assert all(torch.equal(ours, ref) for ours, ref in zip(extra["features"], expected))
        assert expected[0].shape[-2:] == tuple(s // 4 for s in case["img0"].shape[-2:])


def test_bad_pyramid_arguments():
    model = core.build_model("base")
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="pyr_level"):
        model(x, x, 0.5, pyr_level=2, nr_lvl_skipped=2)


def test_gradients_reach_every_parameter():
    model = core.build_model("base")
    x0, x1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    interp, _, _ = model(x0, x1, 0.5, pyr_level=2)
    interp.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_strip_synthesis_equals_whole_frame(golden, golden_model):
    case = golden["cases"][0]
    with torch.no_grad():
        levels = golden_model.estimate_motion(case["img0"], case["img1"], 3, 0)
        whole, _ = golden_model.synthesize(levels, 0.3)
        strips, per_level = golden_model.synthesize(levels, 0.3, strip_rows=32)   # 4 strips at 128 rows
    assert (strips - whole).abs().max() <= 1e-5
    assert per_level[-1].shape == whole.shape
    with pytest.raises(ValueError, match="multiple of 4"):
        golden_model.synthesize(levels, 0.3, strip_rows=30)


def test_channels_last_gradients_match_default_layout(golden):
    """Gradients in both memory formats agree with a float64 run, within a bound scaled by the gradient's norm.

    The tolerance comes from float32 arithmetic, not from one CPU's kernels: a parameter's gradient sums about 1e5
    terms, whose float32 rounding moves it by about eps * sqrt(1e5) ~ 2e-5 of its norm, and float32 flips floor()
    of a few splatting targets against float64, which changes those pixels' flow gradients outright. Measured
    (per parameter, relative to the norm): at most 1.4e-3 on an AVX-512 host and on AVX2 kernels
    (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), in either layout; a layout bug is of order 1. Element-wise
    relative tolerances do not work here: a near-zero element may differ by 3e-4 of itself.
    """
    case = golden["cases"][3]                       # the batched case, N = 2
    grads = []
    for dtype, memory_format in ((torch.float64, torch.contiguous_format), (torch.float32, torch.contiguous_format),
                                 (torch.float32, torch.channels_last)):
        model = core.load_weights(core.build_model("base"), golden["state_dict"])
        model = model.to(dtype=dtype, memory_format=memory_format)
        img0, img1 = (case[k].to(dtype).contiguous(memory_format=memory_format) for k in ("img0", "img1"))
        interp, bi_flow, _ = model(img0, img1, case["time_period"])
        (interp.square().mean() + 1e-3 * bi_flow.abs().mean()).backward()
        grads.append([p.grad.double() for p in model.parameters()])
    for (name, _), reference, default, channels_last in zip(model.named_parameters(), *grads):
        scale = reference.norm()
        assert scale > 0, name
        assert (default - reference).norm() <= 1e-2 * scale, name
        assert (channels_last - reference).norm() <= 1e-2 * scale, name


def test_new_model_starts_as_frame_averaging():
    """Fresh weights: near-zero flow and output convolutions, so the first prediction is the linear blend."""
    torch.manual_seed(0)
    model = core.build_model("base")
    img0, img1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        interp, bi_flow, _ = model(img0, img1, 0.25)
    assert bi_flow.abs().max() < 0.05
    assert (interp - (0.75 * img0 + 0.25 * img1)).abs().max() < 0.02


def test_calibrate_feature_scale_gives_unit_feature_convolutions():
    from core.training import calibrate_feature_scale
    torch.manual_seed(0)
    model = core.build_model("base")
    images = torch.rand(2, 3, 64, 64)
    calibrate_feature_scale(model, images)
    stds = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: stds.append(out.std().item()))
             for m in model.feat_pyramid.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model.feat_pyramid(images)
    for hook in hooks:
        hook.remove()
    assert len(stds) == 12 and stds == pytest.approx([1.0] * 12, rel=1e-3)


@pytest.mark.parametrize("shape, pyr_level, skipped, multiple", [((270, 480), 7, 2, 256), ((72, 64), 3, 0, 16),
                                                                 ((64, 100), 2, 0, 8)])
def test_frame_size_off_the_pyramid_multiple_is_a_clear_error(shape, pyr_level, skipped, multiple):
    """The bare model needs H and W multiples of 2^(L+1); before, 270x480 at L=7 failed deep inside splatting."""
    model = core.build_model("base")
    x = torch.rand(1, 3, *shape)
    message = (rf"pyr_level={pyr_level} needs frame height and width that are multiples of 2\^\(pyr_level \+ 1\) = "
               rf"{multiple}, got {shape[0]}x{shape[1]} \(H x W\); pad .* or use core.Interpolator, which pads")
    with pytest.raises(ValueError, match=message):
        model(x, x, 0.5, pyr_level=pyr_level, nr_lvl_skipped=skipped)
    with pytest.raises(ValueError, match=message):
        model.estimate_motion(x, x, pyr_level, skipped)
    with pytest.raises(ValueError, match=r"two N x 3 x H x W frames of one shape, got \(1, 3, 64, 64\) and "
                                         r"\(1, 3, 64, 128\)"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 128), 0.5, pyr_level=2)


def test_prepare_for_inference_runs_channels_last_and_matches_the_golden_cases(golden, monkeypatch):
    """prepare_for_inference(): eval, channels_last weights, inputs converted on entry, malloc set up once by the
    call (never by a forward pass); the outputs stay within the golden tolerances."""
    import core.device
    kept = []
    monkeypatch.setattr(core.device, "keep_freed_memory", lambda: kept.append(True))
    model = core.load_weights(core.build_model("base"), golden["state_dict"]).train()
    assert model.prepare_for_inference() is model and not model.training
    assert kept == [True]
    weight = model.synthesis_network.pred.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    layouts = []
    hook = model.feat_pyramid.register_forward_pre_hook(
        lambda _module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        for case in golden["cases"]:
            _check_case(case, model(case["img0"], case["img1"], case["time_period"], pyr_level=case["pyr_level"],
                                    nr_lvl_skipped=case["nr_lvl_skipped"]))
    hook.remove()
    assert layouts and all(layouts) and kept == [True]
