"""Splatting and correlation against the reference vectors, hand-computed cases and gradcheck.

The kernel tests run once per splatting backend that serves CPU tensors here (:data:`CPU_BACKENDS`: the C++
kernel, the pure-PyTorch reference, Triton where TRITON_INTERPRET=1 is set, which a subprocess test does, and the
tests' own "wrapped" backend, registered for the test), forced through the public entry points and the operators.
"""
import contextlib
import os
import shutil
import subprocess
import sys

import pytest
import torch

import wrapped_backend
from core.ops import correlation, registry, softsplat, splat, splat_sum
from core.ops.backends import cpp, reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CPU_BACKENDS = [name for name in registry.names()[1:] if registry.backend(name).why_not("cpu") is None]
CPU_BACKENDS.append(wrapped_backend.BACKEND.name)
"""Every registered backend that splats CPU tensors in this process, and the tests' "wrapped" one."""


def _layouts(name):
    backend = registry.backend(name) if name in registry.names() else wrapped_backend.BACKEND
    return [layout for layout in (backend.layout_for("cpu"), registry.DIRECT) if layout]


ROUTES = [pytest.param(name, layout, id=f"{name}-{layout}") for name in CPU_BACKENDS for layout in _layouts(name)]
"""(backend, layout): every backend's own prepared layout, and "direct" (whole frames by splat_sum) for all."""


@contextlib.contextmanager
def using(name):
    """Backend ``name`` forced (the tests' "wrapped" one registered first)."""
    with contextlib.ExitStack() as stack:
        if name == wrapped_backend.BACKEND.name:
            stack.enter_context(registry.registered(wrapped_backend.BACKEND))
        yield stack.enter_context(registry.forced(name))


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Runs a test once per CPU splatting backend."""
    with using(request.param):
        yield request.param


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


def test_splatting_no_channels_gives_an_empty_result(backend):
    flow = torch.rand(2, 2, 5, 6) * 3
    out = splat_sum(torch.rand(2, 0, 5, 6), flow)
    assert out.shape == (2, 0, 5, 6)
    assert splat(torch.rand(2, 0, 5, 6), flow).shape == (2, 0, 5, 6)


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
    with registry.forced("cupy"), pytest.raises(RuntimeError, match="cupy"):
        splat(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))


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
    by_scatter = reference.scatter_sum(inp, flow)
    assert torch.allclose(by_scatter, splatting.sum(inp), atol=1e-5)


def test_both_corner_orderings_agree_and_large_flows_splat_like_small_ones(monkeypatch):
    """Large flows merge per-corner runs, small ones sort all corners: the same order, the same splat."""
    torch.manual_seed(2)
    flow = torch.randn(2, 2, 40, 30) * 6          # converging, diverging and off-frame targets
    flow[0, :, :5] = 1e6                          # far off the frame: clamped cells
    cell, _ = reference.cells_and_weights(flow)
    row, _, slots = reference.slots(2, 40, 30)
    shifts = [dy * row + dx for dy, dx in reference.CORNERS]
    sorted_position, sorted_counts = reference.order_by_sorting(cell, shifts, slots)
    merged_position, merged_counts = reference.order_by_merging(cell, shifts, slots)
    assert torch.equal(sorted_position, merged_position) and torch.equal(sorted_counts, merged_counts)
    inp = torch.rand(2, 3, 40, 30)
    with registry.forced("torch"):
        small = softsplat.Splatting(flow).average(inp)
        monkeypatch.setattr(reference, "MERGE_MIN_PIXELS", 1)
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


def _splat_and_gradients(name, inp, flow, rows=None, grad_output=None):
    """Backend ``name``'s splat through ``Splatting`` (and, given ``grad_output``, its input and flow gradients)."""
    with using(name):
        i, f = inp.detach().clone().requires_grad_(), flow.detach().clone().requires_grad_()
        out = softsplat.Splatting(f).sum(i, rows=rows)
        if grad_output is None:
            return out.detach()
        return (out.detach(), *torch.autograd.grad(out, (i, f), grad_output))


@pytest.mark.parametrize("dtype,channels_last,channels", [(torch.float32, False, 3), (torch.float32, True, 3),
                                                          (torch.float32, True, 40), (torch.float64, True, 16),
                                                          (torch.float64, False, 1)])
@pytest.mark.parametrize("name", [name for name in CPU_BACKENDS if name != "torch"])
def test_backends_agree_with_the_reference(name, dtype, channels_last, channels):
    """The same sums up to float rounding and the same gradients, for every layout, dtype and row range."""
    torch.manual_seed(4)
    inp = torch.randn(2, channels, 23, 31, dtype=dtype)
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 23, 31, dtype=dtype) * 5     # converging, diverging and off-frame targets
    flow[1, :, :3] = 1e7                                   # far off the frame
    flow[0, 0, 5, 5] = float("nan")
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for rows in (None, (0, 1), (7, 19), (22, 23)):
        y0, y1 = rows or (0, 23)
        grad_output = torch.randn(2, channels, y1 - y0, 31, dtype=dtype)
        ours, expected = (_splat_and_gradients(n, inp, flow, rows, grad_output) for n in (name, "torch"))
        assert ours[0].shape == expected[0].shape and ours[0].dtype == dtype
        assert ours[0].is_contiguous(memory_format=torch.channels_last) == \
            expected[0].is_contiguous(memory_format=torch.channels_last)
        for what, a, b in zip(("output", "input gradient", "flow gradient"), ours, expected):
            scale = max(1.0, b.abs().max().item())
            assert (a - b).abs().max() <= tolerance * scale, (rows, what)


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="the C++ kernel could not be built")
def test_cpp_kernel_has_the_reference_corner_weights_bit_for_bit():
    flow = torch.randn(2, 2, 23, 31) * 5
    flow[1, :, :3] = 1e7
    flow[0, 0, 5, 5] = float("nan")
    _, weight = reference.cells_and_weights(flow)
    assert torch.equal(cpp.BACKEND.prepare(flow)[2], weight.t())


def test_cpp_kernel_does_not_depend_on_the_thread_count():
    torch.manual_seed(5)
    inp = torch.rand(2, 8, 30, 20).contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 30, 20) * 4
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        grad_output = torch.randn(2, 8, 30, 20)
        one = _splat_and_gradients("cpp", inp, flow, grad_output=grad_output)
        torch.set_num_threads(3)
        three = _splat_and_gradients("cpp", inp, flow, grad_output=grad_output)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, three))


def test_auto_backend_uses_the_cpp_kernel_on_the_cpu():
    assert registry.backend_for("cpu").name == "cpp"
    with registry.forced("torch"):
        assert registry.backend_for("cpu").name == "torch"
    with pytest.raises(ValueError, match="backend"):
        softsplat.set_backend("fortran")


def test_a_kernel_that_cannot_be_built_warns_and_leaves_splatting_on_the_reference(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(**kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    cpp._extension.cache_clear()
    registry.refresh()
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            assert not cpp.BACKEND.available()
        inp, flow = torch.rand(1, 2, 5, 6), torch.zeros(1, 2, 5, 6)
        assert registry.backend_for(inp.device.type).name == "torch"
        assert torch.equal(splat(inp, flow), inp)
        with registry.forced("cpp"), pytest.raises(RuntimeError, match="could not be built"):
            splat(inp, flow)
    finally:
        cpp._extension.cache_clear()
        registry.refresh()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed (CUDA kernels are compile-checked only where it is)")
@pytest.mark.parametrize("c_type", ["float", "double"])
def test_cupy_kernel_source_compiles(tmp_path, c_type):
    from core.ops.backends.cupy import kernel_source
    source = tmp_path / "splat.cu"
    source.write_text(kernel_source(c_type))
    done = subprocess.run(["nvcc", "--ptx", str(source), "-o", str(tmp_path / "splat.ptx")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / "splat.ptx").read_text()
    for name in ("splat_forward", "splat_backward_input", "splat_backward_flow"):
        assert f".entry {name}" in ptx


# ---------------------------------------------------------------------------- the torch.ops.upr operators

def _plain_splat(inp, flow, rows=None):
    """An independent summation splat from plain differentiable tensor ops (autograd gives its gradients): each
    corner's weight and target computed elementwise, all added with one index_put(accumulate=True)."""
    n, c, h, w = inp.shape
    y0, y1 = rows or (0, h)
    gx = torch.arange(w, dtype=flow.dtype).view(1, 1, w) + flow[:, 0]
    gy = torch.arange(h, dtype=flow.dtype).view(1, h, 1) + flow[:, 1]
    finite = torch.isfinite(gx) & torch.isfinite(gy)
    gx, gy = torch.where(finite, gx, -10.0), torch.where(finite, gy, -10.0)
    x0, y0f = torch.floor(gx).detach(), torch.floor(gy).detach()
    fx, fy = gx - x0, gy - y0f
    image = torch.arange(n).view(n, 1, 1)
    table = inp.new_zeros(n * (y1 - y0) * w + 1, c)
    values = inp.permute(0, 2, 3, 1)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        tx, ty = x0 + dx, y0f + dy
        weight = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
        inside = finite & (tx >= 0) & (tx < w) & (ty >= y0) & (ty < y1)
        index = torch.where(inside, image * (y1 - y0) * w + (ty.clamp(y0, y1 - 1) - y0) * w + tx.clamp(0, w - 1),
                            n * (y1 - y0) * w).long()
        table = table.index_put((index.reshape(-1),), (values * (weight * inside)[..., None]).reshape(-1, c),
                                accumulate=True)
    return table[:-1].view(n, y1 - y0, w, c).permute(0, 3, 1, 2)


def _plain_correlation(first, second, d):
    """Correlation as (2d + 1)^2 shifted products of the zero-padded second map (autograd gives the gradients)."""
    n, c, h, w = first.shape
    padded = torch.nn.functional.pad(second, (d, d, d, d))
    return torch.stack([(first * padded[:, :, dy:dy + h, dx:dx + w]).mean(1)
                        for dy in range(2 * d + 1) for dx in range(2 * d + 1)], 1)


def _prepared_splat(inp, flow, layout, rows=None):
    """Splat through the operators directly: splat_prepare + splat_apply in ``layout``."""
    y0, y1 = rows or (0, inp.shape[2])
    prepared = torch.ops.upr.splat_prepare(flow.detach(), layout)
    return torch.ops.upr.splat_apply(inp, flow, *prepared, layout, y0, y1)


@pytest.mark.parametrize("name,layout", ROUTES)
def test_operators_match_the_reference_vectors(splat_vectors, name, layout):
    """Every backend's layouts of splat_prepare/splat_apply, and splat_sum, against the golden splats and
    gradients."""
    with using(name):
        for case in splat_vectors["softsplat_cases"]:
            if case["mode"] == "summation":
                out = _prepared_splat(case["input"], case["flow"], layout)
                assert (out - case["output"]).abs().max() <= 1e-5, case["desc"]
                assert (torch.ops.upr.splat_sum(case["input"], case["flow"]) - case["output"]).abs().max() <= 1e-5
        for case in splat_vectors["softsplat_grad_cases"]:
            if case["mode"] != "summation":
                continue
            for through_sum in (False, True):
                inp = case["input"].clone().requires_grad_()
                flow = case["flow"].clone().requires_grad_()
                out = torch.ops.upr.splat_sum(inp, flow) if through_sum else _prepared_splat(inp, flow, layout)
                (out * case["weight"]).sum().backward()
                assert (out - case["output"]).abs().max() <= 1e-5
                assert (inp.grad - case["grad_input"]).abs().max() <= 1e-5
                assert (flow.grad - case["grad_flow"]).abs().max() <= 1e-4


def _awkward_flow(n, h, w, dtype=torch.float32, seed=6):
    torch.manual_seed(seed)
    flow = (torch.randn(n, 2, h, w) * 3).to(dtype)        # converging, diverging and off-frame targets
    flow[0, 0, 1, 2] = float("nan")
    flow[-1, 1, 3, 1] = 1e7                                # far off the frame
    return flow


@pytest.mark.parametrize("name,layout", ROUTES)
@pytest.mark.parametrize("rows", [None, (2, 7)])
def test_operator_gradients_equal_autograd_through_plain_tensor_ops(name, layout, rows):
    """Forward and both gradients of splat_apply (every layout, a row range, channels_last) against autograd
    through an independent implementation (plain tensor ops, one index_put per splat)."""
    flow = _awkward_flow(2, 9, 8)
    inp = torch.randn(2, 5, 9, 8).contiguous(memory_format=torch.channels_last)
    y0, y1 = rows or (0, 9)
    grad_output = torch.randn(2, 5, y1 - y0, 8)
    i, f = inp.clone().requires_grad_(), flow.clone().requires_grad_()
    with using(name):
        out = _prepared_splat(i, f, layout, rows)
        ours = (out.detach(), *torch.autograd.grad(out, (i, f), grad_output))
    assert out.is_contiguous(memory_format=torch.channels_last)
    i, f = inp.clone().requires_grad_(), flow.clone().requires_grad_()
    out = _plain_splat(i, f, rows)
    expected = (out.detach(), *torch.autograd.grad(out, (i, f), grad_output))
    for what, a, b in zip(("output", "input gradient", "flow gradient"), ours, expected):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max().item()), what


def _splat_samples():
    flow = _awkward_flow(2, 7, 6, torch.float64)
    inp = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    return inp, flow


@pytest.mark.parametrize("name,layout", ROUTES)
def test_opcheck_splat_prepare_and_apply(name, layout):
    inp, flow = _splat_samples()
    with using(name):
        _opcheck_prepare_and_apply(inp, flow, layout)


def _opcheck_prepare_and_apply(inp, flow, layout):
    prepared = torch.ops.upr.splat_prepare(flow, layout)
    torch.library.opcheck(torch.ops.upr.splat_prepare, (flow, layout))
    for y0, y1 in ((0, 7), (2, 5)):
        for i in (inp, inp.contiguous(memory_format=torch.channels_last)):
            args = (i.clone().requires_grad_(), flow.clone().requires_grad_(), *prepared, layout, y0, y1)
            torch.library.opcheck(torch.ops.upr.splat_apply, args)
        grad_output = torch.randn(2, 3, y1 - y0, 6, dtype=torch.float64)
        torch.library.opcheck(torch.ops.upr.splat_apply_backward_input, (grad_output, flow, *prepared, layout, y0))
        torch.library.opcheck(torch.ops.upr.splat_apply_backward_flow,
                              (grad_output, inp, flow, *prepared, layout, y0))


def test_opcheck_splat_sum(backend):
    inp, flow = _splat_samples()
    torch.library.opcheck(torch.ops.upr.splat_sum, (inp.requires_grad_(), flow.requires_grad_()))
    grad_output = torch.randn_like(inp)
    torch.library.opcheck(torch.ops.upr.splat_sum_backward_input, (grad_output, flow.detach()))
    torch.library.opcheck(torch.ops.upr.splat_sum_backward_flow, (grad_output, inp.detach(), flow.detach()))


def test_opcheck_correlation():
    first = torch.randn(1, 4, 5, 11, dtype=torch.float64, requires_grad=True)
    second = torch.randn(1, 4, 5, 11, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.upr.correlation, (first, second, 4))
    torch.library.opcheck(torch.ops.upr.correlation, (first, second, 2))
    torch.library.opcheck(torch.ops.upr.correlation_backward,
                          (torch.randn(1, 81, 5, 11, dtype=torch.float64), first.detach(), second.detach(), 4))


@pytest.mark.parametrize("max_displacement,width", [(4, 11), (2, 16), (5, 3)])
def test_correlation_gradients_equal_autograd_through_shifted_products(max_displacement, width):
    """The correlation operator's backward (transposed block products) against autograd through 81 shifted
    products, for displacement windows wider and narrower than a tile."""
    torch.manual_seed(7)
    first = torch.randn(2, 6, 7, width).contiguous(memory_format=torch.channels_last)
    second = torch.randn(2, 6, 7, width)
    size = 2 * max_displacement + 1
    grad_output = torch.randn(2, size * size, 7, width)
    results = []
    for through_ops in (True, False):
        a, b = first.clone().requires_grad_(), second.clone().requires_grad_()
        if through_ops:
            out = correlation(a, b, max_displacement)
        else:
            out = _plain_correlation(a, b, max_displacement)
        results.append((out.detach(), *torch.autograd.grad(out, (a, b), grad_output)))
    for ours, expected in zip(*results):
        assert (ours - expected).abs().max() <= 1e-5


def test_triton_backend_in_a_subprocess_runs_the_kernel_tests_interpreted():
    """With TRITON_INTERPRET=1 (a fresh process: the interpreter must be on when the kernels are decorated) the
    Triton backend serves CPU tensors when forced, so the kernel tests above run it as one more backend (the float64
    gradchecks aside: tests/test_gpu_kernels.py checks its gradients on many more cases)."""
    pytest.importorskip("triton", reason="triton is not installed")
    if "triton" in CPU_BACKENDS:
        pytest.skip("this process already runs the Triton kernels interpreted")
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    selection = "triton and not subprocess and not gradcheck"       # the gradchecks: 30 s interpreted
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", selection],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
