"""Splatting and correlation against the reference vectors, hand-computed cases and gradcheck."""
import shutil
import subprocess

import pytest
import torch

from core.ops import correlation, splat, splat_sum
from core.ops import softsplat


@pytest.fixture(params=["torch", "cpp"])
def backend(request):
    """Runs a test once per CPU splatting backend: the pure-PyTorch reference and the C++ kernel."""
    softsplat.set_backend(request.param)
    yield request.param
    softsplat.set_backend("auto")


def test_splat_matches_reference_vectors(splat_vectors, backend):
    for case in splat_vectors["softsplat_cases"]:
        out = splat(case["input"], case["flow"], case["metric"], case["mode"])
        assert (out - case["output"]).abs().max() <= 1e-5, (case["mode"], case["desc"])


def test_splat_gradients_match_reference(splat_vectors, backend):
    for case in splat_vectors["softsplat_grad_cases"]:
        inp = case["input"].clone().requires_grad_()
        flow = case["flow"].clone().requires_grad_()
        out = splat(inp, flow, case["metric"], case["mode"])
        (out * case["weight"]).sum().backward()
        assert (out - case["output"]).abs().max() <= 1e-5
        assert (inp.grad - case["grad_input"]).abs().max() <= 1e-5
        assert (flow.grad - case["grad_flow"]).abs().max() <= 1e-4


def test_integer_flow_moves_pixels_exactly(backend):
    inp = torch.rand(2, 3, 9, 11)
    flow = torch.zeros(2, 2, 9, 11)
    flow[:, 0], flow[:, 1] = 2.0, -1.0            # right by 2, up by 1
    out = splat_sum(inp, flow)
    assert torch.equal(out[:, :, 0:8, 2:11], inp[:, :, 1:9, 0:9])
    assert out[:, :, 8, :].abs().max() == 0 and out[:, :, :, 0:2].abs().max() == 0


def test_half_pixel_flow_splits_evenly(backend):
    inp = torch.zeros(1, 1, 4, 4)
    inp[0, 0, 1, 1] = 1.0
    flow = torch.zeros(1, 2, 4, 4)
    flow[0, 0, 1, 1], flow[0, 1, 1, 1] = 0.5, 0.5
    out = splat_sum(inp, flow)[0, 0]
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = 0.25
    assert torch.allclose(out, expected)


def test_average_splat_is_identity_for_zero_flow_and_empty_pixels_are_zero(backend):
    inp = torch.rand(1, 4, 6, 7)
    assert torch.equal(splat(inp, torch.zeros(1, 2, 6, 7)), inp)
    far = torch.full((1, 2, 6, 7), 100.0)
    assert splat(inp, far).abs().max() == 0


def test_summation_conserves_mass_inside_the_frame(backend):
    inp = torch.rand(1, 2, 10, 10)
    flow = torch.rand(1, 2, 10, 10) * 0.9   # small enough that nothing leaves a 10x10 frame from [0, 8]
    flow[..., 9, :] = 0
    flow[..., :, 9] = 0
    assert torch.allclose(splat_sum(inp, flow).sum((2, 3)), inp.sum((2, 3)), atol=1e-5)


def test_splat_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        splat(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), mode="nearest")
    with pytest.raises(ValueError, match="metric"):
        splat(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), mode="softmax")
    with pytest.raises(ValueError, match="do not match"):
        splat(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 5))


def test_forced_cupy_backend_refuses_cpu_tensors():
    softsplat.set_backend("cupy")
    try:
        with pytest.raises(RuntimeError, match="cupy"):
            splat(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))
    finally:
        softsplat.set_backend("auto")


@pytest.mark.parametrize("mode", ["summation", "average", "linear", "softmax"])
def test_splat_gradcheck_float64(mode, backend):
    torch.manual_seed(0)
    inp = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # fractional parts kept away from integers so finite differences do not cross a floor()
    flow = (torch.randint(-2, 3, (1, 2, 5, 6)) + 0.2 + 0.6 * torch.rand(1, 2, 5, 6)).double()
    flow.requires_grad_()
    metric = None
    if mode in ("linear", "softmax"):
        metric = (torch.rand(1, 1, 5, 6, dtype=torch.float64) + 0.5).requires_grad_()
    args = (inp, flow) if metric is None else (inp, flow, metric)
    fn = (lambda i, f: splat(i, f, None, mode)) if metric is None else (lambda i, f, m: splat(i, f, m, mode))
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5)


def test_correlation_matches_reference_vectors(splat_vectors):
    for case in splat_vectors["correlation_cases"]:
        out = correlation(case["first"], case["second"])
        assert (out - case["output"]).abs().max() <= 1e-5, case["desc"]
    for case in splat_vectors["correlation_grad_cases"]:
        a = case["first"].clone().requires_grad_()
        b = case["second"].clone().requires_grad_()
        (correlation(a, b) * case["grad_output"]).sum().backward()
        assert (a.grad - case["grad_first"]).abs().max() <= 1e-5
        assert (b.grad - case["grad_second"]).abs().max() <= 1e-5


def test_correlation_hand_computed():
    first = torch.zeros(1, 2, 9, 9)
    second = torch.zeros(1, 2, 9, 9)
    first[0, :, 4, 4] = torch.tensor([1.0, 3.0])
    second[0, :, 5, 2] = torch.tensor([2.0, 1.0])   # dy = +1, dx = -2 from (4, 4)
    out = correlation(first, second)
    channel = (1 + 4) * 9 + (-2 + 4)
    assert out[0, channel, 4, 4] == pytest.approx((1 * 2 + 3 * 1) / 2)
    assert out.abs().sum() == pytest.approx(2.5)


def test_correlation_gradcheck_float64():
    a = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(correlation, (a, b))


@pytest.mark.parametrize("channels_last", [False, True])
def test_splat_rows_and_layouts_agree_with_full_splat(channels_last, backend):
    torch.manual_seed(1)
    inp = torch.rand(2, 5, 12, 9)
    flow = torch.randn(2, 2, 12, 9) * 3
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    splatting = softsplat.Splatting(flow)
    full = splatting.average(inp)
    assert full.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.allclose(full, splat(inp.contiguous(), flow), atol=1e-6)
    pieces = torch.cat([splatting.average(inp, rows=(0, 5)), splatting.average(inp, rows=(5, 12))], 2)
    assert torch.allclose(pieces, full, atol=1e-6)
    by_corner = splatting._sum_by_corner(inp.permute(0, 2, 3, 1).reshape(-1, 5))
    assert torch.allclose(by_corner.view(2, 12, 9, 5).permute(0, 3, 1, 2), splatting.sum(inp), atol=1e-5)


def test_both_corner_orderings_agree_and_large_flows_splat_like_small_ones(monkeypatch):
    """Large flows merge per-corner runs, small ones sort all corners: the same order, the same splat."""
    monkeypatch.setattr(softsplat, "_backend", "torch")
    torch.manual_seed(2)
    flow = torch.randn(2, 2, 40, 30) * 6          # converging, diverging and off-frame targets
    flow[0, :, :5] = 1e6                          # far off the frame: clamped cells
    splatting = softsplat.Splatting(flow)
    cell, _ = softsplat._cells_and_weights(flow)
    row, _, slots = splatting._slots()
    shifts = [dy * row + dx for dy, dx in softsplat.CORNERS]
    sorted_position, sorted_counts = softsplat.Splatting._order_by_sorting(cell, shifts, slots)
    merged_position, merged_counts = softsplat.Splatting._order_by_merging(cell, shifts, slots)
    assert torch.equal(sorted_position, merged_position) and torch.equal(sorted_counts, merged_counts)
    inp = torch.rand(2, 3, 40, 30)
    small = softsplat.Splatting(flow).average(inp)
    monkeypatch.setattr(softsplat, "MERGE_MIN_PIXELS", 1)
    assert torch.equal(softsplat.Splatting(flow).average(inp), small)


def test_non_finite_flow_splats_nothing(backend):
    torch.manual_seed(3)
    inp = torch.rand(1, 2, 6, 8)
    flow = torch.randn(1, 2, 6, 8)
    flow[0, 0, 2, 3], flow[0, 1, 4, 5], flow[0, 0, 1, 1] = float("nan"), float("inf"), -float("inf")
    cleared = inp.clone()
    cleared[..., 2, 3] = cleared[..., 4, 5] = cleared[..., 1, 1] = 0
    safe = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
    assert torch.allclose(splat_sum(inp, flow), splat_sum(cleared, safe), atol=1e-6)


def _cpp_and_reference(inp, flow, rows=None, grad_output=None):
    """The cpp and the torch backend's splat (and, given ``grad_output``, their input and flow gradients)."""
    results = []
    for name in ("cpp", "torch"):
        softsplat.set_backend(name)
        try:
            i, f = inp.detach().clone().requires_grad_(), flow.detach().clone().requires_grad_()
            out = softsplat.Splatting(f).sum(i, rows=rows)
            if grad_output is None:
                results.append(out.detach())
            else:
                results.append((out.detach(), *torch.autograd.grad(out, (i, f), grad_output)))
        finally:
            softsplat.set_backend("auto")
    return results


@pytest.mark.parametrize("dtype,channels_last,channels", [(torch.float32, False, 3), (torch.float32, True, 3),
                                                          (torch.float32, True, 40), (torch.float64, True, 16),
                                                          (torch.float64, False, 1)])
def test_cpp_kernel_agrees_with_the_reference(dtype, channels_last, channels):
    """Same corner weights bit for bit, same sums up to float rounding, for every layout, dtype and row range."""
    from core.ops import softsplat_cpu
    torch.manual_seed(4)
    inp = torch.randn(2, channels, 23, 31, dtype=dtype)
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 23, 31, dtype=dtype) * 5     # converging, diverging and off-frame targets
    flow[1, :, :3] = 1e7                                   # far off the frame
    flow[0, 0, 5, 5] = float("nan")
    _, weight = softsplat._cells_and_weights(flow)
    assert torch.equal(softsplat_cpu.prepare(flow)[1], weight.t())
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for rows in (None, (0, 1), (7, 19), (22, 23)):
        y0, y1 = rows or (0, 23)
        grad_output = torch.randn(2, channels, y1 - y0, 31, dtype=dtype)
        cpp, reference = _cpp_and_reference(inp, flow, rows, grad_output)
        assert cpp[0].shape == reference[0].shape and cpp[0].dtype == dtype
        assert cpp[0].is_contiguous(memory_format=torch.channels_last) == \
            reference[0].is_contiguous(memory_format=torch.channels_last)
        for name, a, b in zip(("output", "input gradient", "flow gradient"), cpp, reference):
            scale = max(1.0, b.abs().max().item())
            assert (a - b).abs().max() <= tolerance * scale, (rows, name)


def test_cpp_kernel_does_not_depend_on_the_thread_count():
    torch.manual_seed(5)
    inp = torch.rand(2, 8, 30, 20).contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 30, 20) * 4
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        grad_output = torch.randn(2, 8, 30, 20)
        one, _ = _cpp_and_reference(inp, flow, grad_output=grad_output)
        torch.set_num_threads(3)
        three, _ = _cpp_and_reference(inp, flow, grad_output=grad_output)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, three))


def test_auto_backend_uses_the_cpp_kernel_on_the_cpu():
    assert softsplat.choose_backend(torch.rand(1, 1, 2, 2)) == "cpp"
    softsplat.set_backend("torch")
    try:
        assert softsplat.choose_backend(torch.rand(1, 1, 2, 2)) == "torch"
    finally:
        softsplat.set_backend("auto")
    with pytest.raises(ValueError, match="backend"):
        softsplat.set_backend("fortran")


def test_a_kernel_that_cannot_be_built_warns_and_leaves_splatting_on_the_reference(monkeypatch):
    from torch.utils import cpp_extension
    from core.ops import softsplat_cpu

    def no_compiler(**kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    softsplat_cpu._extension.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            assert not softsplat_cpu.available()
        inp, flow = torch.rand(1, 2, 5, 6), torch.zeros(1, 2, 5, 6)
        assert softsplat.choose_backend(inp) == "torch"
        assert torch.equal(splat(inp, flow), inp)
        softsplat.set_backend("cpp")
        with pytest.raises(RuntimeError, match="could not be built"):
            splat(inp, flow)
    finally:
        softsplat.set_backend("auto")
        softsplat_cpu._extension.cache_clear()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed (CUDA kernels are compile-checked only where it is)")
@pytest.mark.parametrize("c_type", ["float", "double"])
def test_cupy_kernel_source_compiles(tmp_path, c_type):
    from core.ops.softsplat_cupy import kernel_source
    source = tmp_path / "splat.cu"
    source.write_text(kernel_source(c_type))
    done = subprocess.run(["nvcc", "--ptx", str(source), "-o", str(tmp_path / "splat.ptx")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / "splat.ptx").read_text()
    for name in ("splat_forward", "splat_backward_input", "splat_backward_flow"):
        assert f".entry {name}" in ptx
