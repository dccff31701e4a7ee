"""ONNX export: the export-friendly ops against the model's ops, the exported graph (scatter-add nodes, dynamic
sizes) in ONNX Runtime against PyTorch on the golden cases and a real frame pair, and tools.export_onnx's CLI.

Two exports per module (the golden pyramids L=3 and L=5 skipping 2), each traced once at a small size."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import core  # noqa: E402
from core.ops import correlation, registry, softsplat, splat  # noqa: E402
from core.ops import export_friendly  # noqa: E402
from tools import export_onnx  # noqa: E402

pytest.importorskip("onnx", reason="needs the [onnx] extra (pip install -e '.[onnx]')")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra (pip install -e '.[onnx]')")


@pytest.fixture
def backend():
    """The ops are compared with the pure-PyTorch reference (test_ops checks the kernels against it)."""
    with registry.forced("torch"):
        yield "torch"


def _flow_with_edge_cases(n, h, w, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    flow = torch.randn(n, 2, h, w, generator=generator) * scale
    flow[0, 0, 1, 2], flow[0, 1, 3, 4], flow[-1, 0, 2, 2] = float("nan"), float("inf"), -float("inf")
    flow[0, 0, 0, 0] = 1e30                        # far off the frame: must not overflow the index cast
    flow[-1, :, 4, 5] = torch.tensor([2.0, -1.0])  # an integer flow: corners with weight exactly 0
    return flow


@pytest.mark.parametrize("mode", softsplat.MODES)
def test_export_friendly_splat_equals_splat(mode, backend):
    generator = torch.Generator().manual_seed(1)
    inp = torch.rand(2, 5, 9, 11, generator=generator)
    metric = torch.randn(2, 1, 9, 11, generator=generator)
    if mode == "linear":                           # a positive metric, as in use: no near-zero normalisers
        metric = metric.abs() + 0.1
    flow = _flow_with_edge_cases(2, 9, 11, 4.0, 2)
    expected = splat(inp, flow, metric, mode)
    with export_friendly.exporting(), registry.forced("cupy"):   # no operator runs: cupy cannot splat CPU tensors
        ours = splat(inp, flow, metric, mode)
    assert export_friendly.active() is False
    assert torch.allclose(ours, expected, atol=1e-5, rtol=1e-5)


def test_export_friendly_splat_matches_reference_vectors(splat_vectors):
    for case in splat_vectors["softsplat_cases"]:
        with export_friendly.exporting():
            out = splat(case["input"], case["flow"], case["metric"], case["mode"])
        assert (out - case["output"]).abs().max() <= 1e-5, (case["mode"], case["desc"])


def test_exporting_routes_splatting_objects_with_rows_and_weights(backend):
    """What the synthesis network calls: Splatting(flow).average(input, rows), and sum with a weight."""
    generator = torch.Generator().manual_seed(3)
    inp = torch.rand(1, 4, 12, 10, generator=generator)
    weight = torch.rand(1, 1, 12, 10, generator=generator)
    flow = _flow_with_edge_cases(1, 12, 10, 3.0, 4)
    expected = [softsplat.Splatting(flow).average(inp, (0, 12)), softsplat.Splatting(flow).average(inp, (4, 8)),
                softsplat.Splatting(flow).sum(inp, weight), softsplat.Splatting(flow).normaliser(weight, (2, 6))]
    with export_friendly.exporting(), registry.forced("cupy"):   # no operator runs
        ours = [softsplat.Splatting(flow).average(inp, (0, 12)), softsplat.Splatting(flow).average(inp, (4, 8)),
                softsplat.Splatting(flow).sum(inp, weight), softsplat.Splatting(flow).normaliser(weight, (2, 6))]
    for a, b in zip(ours, expected):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6, rtol=1e-6)


def test_export_friendly_correlation_equals_correlation():
    generator = torch.Generator().manual_seed(5)
    for shape, d in (((2, 7, 6, 13), 4), ((1, 3, 5, 4), 2)):
        first, second = torch.randn(*shape, generator=generator), torch.randn(*shape, generator=generator)
        expected = correlation(first, second, d)
        with export_friendly.exporting():
            ours = correlation(first, second, d)
        assert ours.shape == expected.shape and torch.allclose(ours, expected, atol=1e-5, rtol=1e-5)


def test_exporting_is_reentrant_and_ends_on_errors():
    with pytest.raises(RuntimeError):
        with export_friendly.exporting():
            with export_friendly.exporting():
                assert export_friendly.active()
            assert export_friendly.active()
            raise RuntimeError("boom")
    assert not export_friendly.active()
    with pytest.raises(ValueError, match="needs a metric"), export_friendly.exporting():
        splat(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2), None, "softmax")


# ------------------------------------------------------------------------------------------ the exported model

@pytest.fixture(scope="module")
def golden_model(golden):
    return core.load_weights(core.build_model("base"), golden["state_dict"]).eval()


@pytest.fixture(scope="module")
def exported(golden_model, tmp_path_factory):
    """(pyr_level, nr_lvl_skipped) -> ONNX Runtime session of the golden weights, exported once each."""
    folder = tmp_path_factory.mktemp("onnx")
    sessions = {}

    def get(pyr_level, nr_lvl_skipped):
        key = (pyr_level, nr_lvl_skipped)
        if key not in sessions:
            path = str(folder / f"upr-l{pyr_level}-s{nr_lvl_skipped}.onnx")
            size = export_onnx.size_multiple(pyr_level)
            export_onnx.export(golden_model, path, pyr_level, nr_lvl_skipped, (size, size))
            sessions[key] = (path, export_onnx.ort_session(path, threads=2))
        return sessions[key]
    return get


def test_exported_graph_splats_with_scatter_add_and_records_its_multiple(exported):
    import onnx

    path, _ = exported(3, 0)
    scatters = export_onnx.scatter_reductions(path)
    # per level: 2 fused average splats in the motion estimator; in synthesis 8 averaged inputs (2 images, 2 x 3
    # features) and 6 normalisers (2 flows x 3 scales; the image's and the first features' one is shared)
    assert len(scatters) == 3 * (2 + 8 + 6) and set(scatters) == {("ScatterElements", "add")}
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 18
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["upr_multiple"] == "16" and metadata["upr_pyr_level"] == "3"
    assert [i.name for i in proto.graph.input] == ["img0", "img1", "t"]
    assert [o.name for o in proto.graph.output] == ["interp", "bi_flow"]


def test_onnx_runtime_reproduces_the_golden_cases_and_pytorch(golden, golden_model, exported):
    """Every golden case (sizes and batch other than the traced 1 x 3 x 16 x 16 / 64 x 64, one with skipped
    levels; the batched case with a per-sample t): ORT vs the original's golden outputs within test_model's
    2e-4 / 2e-3 px, and vs this PyTorch model within 1e-4 (images) / 1e-3 px (flows)."""
    for case in golden["cases"]:
        _, session = exported(case["pyr_level"], case["nr_lvl_skipped"])
        n = case["img0"].shape[0]
        t = torch.tensor([case["time_period"], 0.3]) if n == 2 else torch.tensor([case["time_period"]])
        interp, bi_flow = export_onnx.run_ort(session, case["img0"], case["img1"], t)
        assert interp.shape == case["interp_img"].shape and bi_flow.shape == case["bi_flow"].shape
        assert (interp[:1] - case["interp_img"][:1]).abs().max() <= 2e-4
        assert (bi_flow - case["bi_flow"]).abs().max() <= 2e-3
        with torch.no_grad():
            reference = golden_model(case["img0"], case["img1"], t, case["pyr_level"], case["nr_lvl_skipped"])
        assert (interp - reference[0]).abs().max() <= 1e-4
        assert (bi_flow - reference[1]).abs().max() <= 1e-3


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
    """python -m tools.export_onnx on the shipped checkpoint (L=3, traced at 32x16, --check): (path, stdout)."""
    out = tmp_path_factory.mktemp("shipped") / "upr-base.onnx"
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = export_onnx.main(["--out", str(out), "--example_size", "32x16", "--check", "--threads", "2"])
    assert code == 0
    return str(out), printed.getvalue()


def test_cli_exports_the_shipped_checkpoint_and_checks_it(shipped_export):
    path, printed = shipped_export
    assert os.path.isfile(path) and "48 scatter-add nodes" in printed and "multiples of 16" in printed
    interp_diff = float(printed.split("interp max |diff| ")[1].split(",")[0])
    flow_diff = float(printed.split("bi_flow ")[-1].split()[0])
    assert 0 <= interp_diff <= 1e-4 and 0 <= flow_diff <= 1e-3


def test_onnx_runtime_on_a_real_pair_with_the_shipped_weights(shipped_export):
    """carphone frames 0 and 2 (176x144, a multiple of 16) with the shipped checkpoint, through the file the
    CLI wrote (traced at 32x16)."""
    from core.frames import pad_to_multiple, read_image, to_float, to_rgb
    from core.interpolator import SHIPPED_CHECKPOINT

    model = core.load_weights(core.build_model("base"), SHIPPED_CHECKPOINT).eval()
    frames = [read_image(os.path.join(ROOT, "demo", "images", f"carphone_{k}.png")) for k in (0, 2)]
    img0, img1 = (pad_to_multiple(torch.from_numpy(to_float(to_rgb(f))).permute(2, 0, 1)[None], 16) for f in frames)
    assert img0.shape == (1, 3, 144, 176)
    with torch.no_grad():
        interp, bi_flow, _ = model(img0, img1, 0.5, 3, 0)
    ours = export_onnx.run_ort(export_onnx.ort_session(shipped_export[0], threads=2), img0, img1, 0.5)
    assert (ours[0] - interp).abs().max() <= 1e-4
    assert (ours[1] - bi_flow).abs().max() <= 1e-3
    assert bi_flow.abs().max() > 0.5                  # real motion, not a trivially zero flow


def test_export_rejects_bad_sizes_and_opsets(golden_model, tmp_path):
    with pytest.raises(ValueError, match="multiples of 2\\^\\(pyr_level\\+1\\) = 16"):
        export_onnx.export(golden_model, str(tmp_path / "x.onnx"), 3, 0, (24, 16))
    with pytest.raises(ValueError, match="opset must be at least 18"):
        export_onnx.export(golden_model, str(tmp_path / "x.onnx"), 3, 0, (16, 16), opset=17)
    with pytest.raises(ValueError, match="pyr_level"):
        export_onnx.ExportedUPRNet(golden_model, 2, 2)


@pytest.mark.parametrize("argv,message", [
    (["--out", "x.pt"], "--out must end in .onnx"),
    (["--out", "x.onnx", "--precision", "bf16"], "fp32 only"),
    (["--out", "x.onnx", "--low_memory", "on"], "--low_memory on"),
    (["--out", "x.onnx", "--scale", "0.5"], "not --scale"),
    (["--out", "x.onnx", "--compile"], "--compile does not apply"),
    (["--out", "x.onnx", "--opset", "17"], "--opset must be at least 18"),
    (["--out", "x.onnx", "--example_size", "24x16"], "multiples of 2^(pyr_level+1) = 16"),
    (["--out", "x.onnx", "--example_size", "big"], "expected WIDTHxHEIGHT"),
    (["--out", "x.onnx", "--pyr_level", "2", "--nr_lvl_skipped", "2"], "--nr_lvl_skipped < --pyr_level"),
    (["--out", "x.onnx", "--model_file", "missing.pkl"], "missing.pkl"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert export_onnx.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_runtime_times_the_onnx_file(shipped_export, tmp_path):
    from tools import runtime

    out = tmp_path / "runtime.json"
    runtime.main(["--model_sizes", "base", "--no-memory", "--onnx", shipped_export[0], "--out_json", str(out),
                  "--repeats", "1", "--warmup", "0", "--resolution", "64x48", "--throughput_repeats", "0",
                  "--matmul_size", "128", "--matmul_repeats", "1", "--threads", "1"])
    import json
    entry = json.loads(out.read_text())["onnx"]
    assert entry["latency_ms"] > 0 and entry["padded"] == "64x64" and entry["pyr_level"] == "3"
    assert entry["threads"] == 1
