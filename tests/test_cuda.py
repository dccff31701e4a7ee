"""On a CUDA device: the splatting kernels (Triton, CuPy where importable, the pure-PyTorch reference) on the
reference vectors and the model's golden cases, the kernels agreeing with each other, a training step and
torch.compile. ``tools/gpu_check.sh`` runs them (``pytest -m cuda``).

They skip when no CUDA device is present, and only then. ``UPR_CUDA_TEST_DEVICE=cpu`` runs them on the CPU
instead (``tools/gpu_check.sh --device cpu`` does, with TRITON_INTERPRET=1 so that the Triton kernels run in
Triton's interpreter); CuPy is left out there.
"""
import contextlib
import importlib.util
import os

import pytest
import torch

import core
import gpu_kernel_cases
from core.losses import frame_loss
from core.ops import registry, softsplat
from core.ops.backends import cupy as cupy_backend
from core.ops.backends import triton as triton_backend

pytestmark = pytest.mark.cuda

DEVICE = torch.device(os.environ.get("UPR_CUDA_TEST_DEVICE", "cuda"))
KERNELS = ["reference", "triton"] + (["cupy"] if importlib.util.find_spec("cupy") and DEVICE.type == "cuda" else [])


@pytest.fixture(scope="module")
def device():
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return DEVICE


@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 convolutions and matmuls: cuDNN's default TF32 (10-bit mantissas) would exceed the golden
    tolerances on its own."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def kernel(name):
    """Kernel ``name`` ("reference": the "torch" backend) forced while the context is open, forward and backward
    (the direct layout's gradients are chosen when they run); yields its differentiable summation splat
    ``f(input, flow)``, the operator ``torch.ops.upr.splat_sum``."""
    if name == "triton":
        assert triton_backend.available(), ("the Triton kernels are not available here (triton missing, or the CPU "
                                            "without TRITON_INTERPRET=1)")
    if name == "cupy":
        assert cupy_backend.available(), "CuPy is importable but its kernels are not available"
    selected = "torch" if name == "reference" else name
    with registry.forced(selected):
        assert registry.backend_for(torch.device(DEVICE).type).name == selected
        yield torch.ops.upr.splat_sum


def to(device, value):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(to(device, v) for v in value)
    if isinstance(value, dict):
        return {k: to(device, v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name", KERNELS)
def test_reference_vectors(name, device, splat_vectors):
    with kernel(name) as splat_sum:
        _reference_vectors(splat_sum, device, splat_vectors)


def _reference_vectors(splat_sum, device, splat_vectors):
    for case in to(device, splat_vectors["softsplat_cases"]):
        with torch.no_grad():
            out = gpu_kernel_cases.compose_splat(splat_sum, case["input"], case["flow"], case["metric"], case["mode"])
        assert out.device.type == device.type
        assert (out - case["output"]).abs().max() <= 1e-5, (case["mode"], case["desc"])
    for case in to(device, splat_vectors["softsplat_grad_cases"]):
        inp, flow = case["input"].clone().requires_grad_(), case["flow"].clone().requires_grad_()
        out = gpu_kernel_cases.compose_splat(splat_sum, inp, flow, case["metric"], case["mode"])
        (out * case["weight"]).sum().backward()
        assert (out - case["output"]).abs().max() <= 1e-5
        assert (inp.grad - case["grad_input"]).abs().max() <= 1e-5
        assert (flow.grad - case["grad_flow"]).abs().max() <= 1e-4


@pytest.mark.parametrize("name", KERNELS)
def test_golden_model_cases(name, device, golden):
    """The original model's reference outputs (as tests/test_model.py checks them on the CPU), every splat of the
    model through this kernel."""
    model = core.build_model("base")
    core.load_weights(model, golden["state_dict"])
    model = model.eval().to(device)
    with kernel(name), torch.no_grad():
        for case in to(device, golden["cases"]):
            interp, bi_flow, extra = model(case["img0"], case["img1"], case["time_period"],
                                           pyr_level=case["pyr_level"], nr_lvl_skipped=case["nr_lvl_skipped"])
            assert (interp - case["interp_img"]).abs().max() <= 2e-4
            assert (bi_flow - case["bi_flow"]).abs().max() <= 2e-3
            for ours, ref in zip(extra["interp_imgs"], case["interp_imgs"]):
                assert (ours - ref).abs().max() <= 2e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", [k for k in KERNELS if k != "reference"])
def test_kernels_agree_with_the_reference(name, dtype, device):
    """Output and both gradients on a feature map with converging, diverging, far-off and non-finite flows."""
    generator = torch.Generator().manual_seed(11)
    shape = (2, 16, 48, 64) if device.type == "cuda" else (2, 4, 12, 16)
    inp = torch.randn(*shape, generator=generator, dtype=dtype)
    flow = torch.randn(shape[0], 2, *shape[2:], generator=generator, dtype=dtype) * 6
    flow[1, :, :3] = 1e7
    flow[0, 0, 5, :3] = torch.tensor([float("nan"), float("inf"), -1e30], dtype=dtype)
    grad_output = torch.randn(*shape, generator=generator, dtype=dtype)
    results = []
    for each in (name, "reference"):
        with kernel(each) as splat_sum:
            i = inp.to(device).requires_grad_()
            f = flow.to(device).requires_grad_()
            out = splat_sum(i, f)
            results.append((out.detach(), *torch.autograd.grad(out, (i, f), grad_output.to(device))))
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for name, a, b in zip(("output", "grad_input", "grad_flow"), *results):
        assert a.dtype == dtype and a.device.type == device.type, name
        assert (a - b).abs().max() <= tolerance * max(1.0, b.abs().max().item()), name


def test_triton_int64_offsets_and_deterministic_backward(device):
    generator = torch.Generator().manual_seed(12)
    inp = torch.randn(2, 8, 40, 56, generator=generator).to(device)
    flow = (torch.randn(2, 2, 40, 56, generator=generator) * 5).to(device)
    grad_output = torch.randn(2, 8, 40, 56, generator=generator).to(device)
    narrow, wide = (triton_backend.splat_sum(inp, flow, index64=v) for v in (False, True))
    assert torch.allclose(narrow, wide, atol=1e-5)          # atomics: the order of additions may differ
    first = triton_backend.splat_sum_backward(grad_output, inp, flow, index64=False)
    for again in (triton_backend.splat_sum_backward(grad_output, inp, flow, index64=False),
                  triton_backend.splat_sum_backward(grad_output, inp, flow, index64=True)):
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_default_splatting_on_this_device(device):
    """Whatever backend "auto" picks for these tensors equals the reference, and under
    torch.use_deterministic_algorithms(True) it gives the same bits twice."""
    generator = torch.Generator().manual_seed(13)
    inp = torch.randn(1, 8, 64, 96, generator=generator).to(device)
    flow = (torch.randn(1, 2, 64, 96, generator=generator) * 3).to(device)
    metric = torch.randn(1, 1, 64, 96, generator=generator).to(device)
    with registry.forced("auto"):
        auto = softsplat.splat(inp, flow, metric, "softmax")
    with registry.forced("torch"):
        reference = softsplat.splat(inp, flow, metric, "softmax")
    assert torch.allclose(auto, reference, atol=1e-5)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with registry.forced("auto"):
            once, twice = (softsplat.splat(inp, flow, metric, "softmax") for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(once, twice)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_step(device, precision):
    """One AdamW step of the base model: finite loss and gradients, every parameter group moves."""
    torch.manual_seed(0)
    model = core.build_model("base").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    img0, img1, gt = (torch.rand(2, 3, 64, 64, device=device) for _ in range(3))
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        prediction, bi_flow, _ = model(img0, img1, torch.full((2,), 0.5, device=device))
    loss, _ = frame_loss(prediction.float(), gt)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    assert torch.isfinite(loss) and prediction.shape == gt.shape
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    optimizer.step()
    moved = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
    assert moved >= 0.9 * len(before)


def test_torch_compile_matches_eager(device, golden):
    """The base model under torch.compile (graph breaks allowed) gives eager's frames."""
    model = core.build_model("base")
    core.load_weights(model, golden["state_dict"])
    model = model.eval().to(device)
    case = to(device, golden["cases"][0])
    args = (case["img0"], case["img1"], case["time_period"])
    kwargs = {"pyr_level": case["pyr_level"], "nr_lvl_skipped": case["nr_lvl_skipped"]}
    with torch.no_grad():
        eager = model(*args, **kwargs)[0]
        compiled = torch.compile(model)(*args, **kwargs)[0]
    assert (compiled - eager).abs().max() <= 1e-4
    assert (compiled - case["interp_img"]).abs().max() <= 2e-4
