"""Both GPU splatting kernels, run on this CPU.

* triton: core/ops/backends/triton.py's kernels through Triton's interpreter, in one fresh process with
  TRITON_INTERPRET=1 (the interpreter must be on when the kernels are decorated); they are also compiled for
  sm_90 (H100/H200) down to a cubin, which needs no GPU.
* cuda_source: core/ops/backends/cupy.py's CUDA source compiled as C++ with core/ops/csrc/cuda_cpu_shim.h (one
  block of one thread, atomicAdd a plain add) and called through ctypes.

Each runs the cases of tests/gpu_kernel_cases.py: the reference vectors (every mode, forward and gradients) and
hand-made cases (integer, half-pixel, far-off, non-finite and converging flows, batch > 1, one row or column, no
channels, float64, int32 and int64 offsets, each gradient alone), checked against the reference vectors, the
pure-PyTorch reference and hand-computed values.
"""
import ctypes
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

import gpu_kernel_cases
from core.ops import registry, softsplat
from core.ops.backends import cupy as cupy_backend

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIM = ROOT / "core" / "ops" / "csrc" / "cuda_cpu_shim.h"


@pytest.fixture(scope="module")
def cases(splat_vectors):
    return gpu_kernel_cases.build_cases(splat_vectors)


class ReferenceOps:
    """The pure-PyTorch reference backend as ops (index64 has no meaning there)."""

    def forward(self, input, flow, index64):
        with torch.no_grad():
            return softsplat.Splatting(flow).sum(input)

    def backward(self, grad_output, input, flow, need_input, need_flow, index64):
        i, f = input.detach().clone().requires_grad_(), flow.detach().clone().requires_grad_()
        with torch.enable_grad():                        # also when called from an autograd.Function's backward
            grads = torch.autograd.grad(softsplat.Splatting(f).sum(i), (i, f), grad_output)
        return grads[0] if need_input else None, grads[1] if need_flow else None


@pytest.fixture(scope="module")
def reference(cases):
    with registry.forced("torch"):
        # the reference cannot splat zero channels (embedding_bag fails): that case is checked by hand
        sums = {k: v for k, v in cases["sums"].items() if k != "no_channels"}
        return gpu_kernel_cases.run_cases(ReferenceOps(), {"sums": sums, "modes": cases["modes"]})


# --------------------------------------------------------------------------------------- the two kernels


@pytest.fixture(scope="module")
def triton_results(cases, tmp_path_factory):
    pytest.importorskip("triton", reason="triton is not installed")     # it comes with torch's Linux wheels
    folder = tmp_path_factory.mktemp("triton")
    torch.save(cases, folder / "cases.pt")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "gpu_kernel_cases.py"), str(folder / "cases.pt"),
                           str(folder / "results.pt")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return torch.load(folder / "results.pt", weights_only=True)


class ShimOps:
    """The CuPy kernels' CUDA source compiled for the CPU (one library per C type) as ops."""
    _C_TYPES = {torch.float32: "float", torch.float64: "double"}

    def __init__(self, libraries):
        self.libraries = libraries

    def _call(self, dtype, name, total, c, h, w, *tensors):
        function = getattr(self.libraries[self._C_TYPES[dtype]], name)
        function(ctypes.c_longlong(total), ctypes.c_int(c), ctypes.c_int(h), ctypes.c_int(w),
                 *[ctypes.c_void_p(t.data_ptr()) for t in tensors])

    def forward(self, input, flow, index64):
        input, flow = input.contiguous(), flow.to(input.dtype).contiguous()
        output = torch.zeros_like(input)
        self._call(input.dtype, "splat_forward", input.numel(), *input.shape[1:], input, flow, output)
        return output

    def backward(self, grad_output, input, flow, need_input, need_flow, index64):
        input, flow = input.contiguous(), flow.to(input.dtype).contiguous()
        grad_output = grad_output.to(input.dtype).contiguous()
        n, c, h, w = input.shape
        grad_input = grad_flow = None
        if need_input:
            grad_input = torch.empty_like(input)
            self._call(input.dtype, "splat_backward_input", input.numel(), c, h, w, flow, grad_output, grad_input)
        if need_flow:
            grad_flow = torch.empty_like(flow)
            self._call(input.dtype, "splat_backward_flow", n * h * w, c, h, w, input, flow, grad_output, grad_flow)
        return grad_input, grad_flow


@pytest.fixture(scope="module")
def shim_libraries(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    folder = tmp_path_factory.mktemp("cuda_source")
    libraries = {}
    for c_type in ("float", "double"):
        source = folder / f"splat_{c_type}.cu"
        source.write_text(cupy_backend.kernel_source(c_type))
        library = folder / f"splat_{c_type}.so"
        done = subprocess.run([compiler, "-O2", "-std=c++17", "-Wall", "-shared", "-fPIC", "-include", str(SHIM),
                               "-x", "c++", str(source), "-o", str(library)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stderr, done.stderr
        libraries[c_type] = ctypes.CDLL(str(library))
        for name in cupy_backend.KERNEL_NAMES:
            getattr(libraries[c_type], name).restype = None
    return libraries


@pytest.fixture(scope="module")
def shim_results(cases, shim_libraries):
    return gpu_kernel_cases.run_cases(ShimOps(shim_libraries), cases)


@pytest.fixture(params=["triton", "cuda_source"])
def results(request):
    return request.getfixturevalue("triton_results" if request.param == "triton" else "shim_results")


# ------------------------------------------------------------------------------------------------ checks


def close(a, b, tolerance):
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    return (a - b).abs().max().item() <= tolerance * scale if a.numel() else True


def test_reference_vectors(results, splat_vectors):
    for i, case in enumerate(splat_vectors["softsplat_cases"]):
        assert close(results[f"vector{i}/output"], case["output"], 1e-5), (case["mode"], case["desc"])
    for i, case in enumerate(splat_vectors["softsplat_grad_cases"]):
        assert close(results[f"vector_grad{i}/output"], case["output"], 1e-5)
        assert close(results[f"vector_grad{i}/grad_input"], case["grad_input"], 1e-5)
        assert close(results[f"vector_grad{i}/grad_flow"], case["grad_flow"], 1e-4)


def test_every_case_equals_the_reference(results, reference):
    """Forward and both gradients of every case, every mode, int32 and int64 offsets, each gradient alone."""
    assert set(reference) <= set(results)
    for key, expected in reference.items():
        got = results[key]
        if expected is None:
            assert got is None, key
            continue
        tolerance = 1e-12 if expected.dtype == torch.float64 else 1e-5
        assert close(got, expected, tolerance), key


def test_int32_and_int64_offsets_agree_bit_for_bit(results, cases):
    for name in cases["sums"]:
        for what in ("output", "grad_input", "grad_flow"):
            assert torch.equal(results[f"{name}/int32/{what}"], results[f"{name}/int64/{what}"]), (name, what)


def test_each_gradient_alone(results, cases):
    for name in cases["sums"]:
        assert results[f"{name}/input_only/grad_flow"] is None and results[f"{name}/flow_only/grad_input"] is None
        assert torch.equal(results[f"{name}/input_only/grad_input"], results[f"{name}/int32/grad_input"]), name
        assert torch.equal(results[f"{name}/flow_only/grad_flow"], results[f"{name}/int32/grad_flow"]), name


def test_hand_computed_splats(results, cases):
    sums = cases["sums"]
    # integer flow moves pixels exactly: right by 2, up by 1; the gradient moves back
    inp, _, grad_output = sums["integer"]
    out = results["integer/int32/output"]
    assert torch.equal(out[:, :, 0:8, 2:11], inp[:, :, 1:9, 0:9])
    assert out[:, :, 8, :].abs().max() == 0 and out[:, :, :, 0:2].abs().max() == 0
    grad_input = results["integer/int32/grad_input"]
    assert torch.equal(grad_input[:, :, 1:9, 0:9], grad_output[:, :, 0:8, 2:11])
    assert grad_input[:, :, 0].abs().max() == 0 and grad_input[:, :, :, 9:].abs().max() == 0
    # half a pixel right and down: a quarter to each of the four neighbours
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1:3, 1:3] = 0.25
    assert torch.equal(results["half/int32/output"], expected)
    # every pixel onto (0.25, 0.5): the four targets get the weighted totals, nothing else
    inp, _, grad_output = sums["converge"]
    out = results["converge/int32/output"]
    total = inp.sum((2, 3))
    for (y, x), weight in (((0, 0), 0.75 * 0.5), ((0, 1), 0.25 * 0.5), ((1, 0), 0.75 * 0.5), ((1, 1), 0.25 * 0.5)):
        assert torch.allclose(out[:, :, y, x], weight * total, atol=1e-5)
    assert out.abs().sum() == pytest.approx(out[:, :, :2, :2].abs().sum().item())
    # no channels: an empty output, a zero flow gradient
    assert results["no_channels/int32/output"].shape == (1, 0, 3, 4)
    assert torch.equal(results["no_channels/int32/grad_flow"], torch.zeros(1, 2, 3, 4))


def test_far_off_and_non_finite_flows_splat_nothing(results, cases):
    # far off the frame: nothing arrives, and such pixels get no gradient
    assert results["far/int32/output"].abs().max() == 0
    assert results["far/int32/grad_input"].abs().max() == 0 and results["far/int32/grad_flow"].abs().max() == 0
    # non-finite flow: the pixel splats nothing, the others as usual; its gradients are 0
    inp, flow, _ = cases["sums"]["nonfinite"]
    cleared = inp.clone()
    cleared[..., 2, 3] = cleared[..., 4, 5] = cleared[..., 1, 1] = 0
    safe = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
    assert torch.allclose(results["nonfinite/int32/output"], softsplat.splat_sum(cleared, safe), atol=1e-6)
    for what in ("grad_input", "grad_flow"):
        grad = results[f"nonfinite/int32/{what}"]
        assert grad[..., 2, 3].abs().max() == 0 and grad[..., 4, 5].abs().max() == 0 and grad[..., 1, 1].abs().max() == 0
    for name in ("random32", "random64"):
        for what in ("output", "grad_input", "grad_flow"):
            assert torch.isfinite(results[f"{name}/int32/{what}"]).all(), (name, what)


def test_average_splat_of_zero_flow_is_the_identity(results, cases):
    inp = cases["modes"]["average_zero_flow"][0]
    assert torch.allclose(results["average_zero_flow/output"], inp, atol=1e-6)
    assert results["average_far/output"].abs().max() == 0


# --------------------------------------------------------------------------- Triton: compiled for sm_90


def test_triton_kernels_compile_for_hopper():
    """Both kernels compile to a cubin for sm_90 (H100/H200) without a GPU; the int32 variants form no 64-bit
    integers at all, the int64 ones do; the forward adds with atomics, the backward stores without."""
    triton = pytest.importorskip("triton", reason="triton is not installed")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from core.ops.backends import triton as triton_backend
    if triton_backend.interpreted():
        pytest.skip("TRITON_INTERPRET is set in this process: the kernels are interpreted, not compiled")
    target = GPUTarget("cuda", 90, 32)
    sizes = {"pixels": "i32", "C": "i32", "H": "i32", "W": "i32"}
    variants = [("forward", dtype, index64, None) for dtype in ("fp32", "fp64") for index64 in (False, True)]
    variants += [("backward", dtype, index64, (True, True)) for dtype in ("fp32", "fp64") for index64 in (False, True)]
    variants += [("backward", "fp32", False, (True, False)), ("backward", "fp32", False, (False, True))]
    for kind, dtype, index64, needs in variants:
        if kind == "forward":
            kernel, pointers = triton_backend._splat_forward, ("input_ptr", "flow_ptr", "output_ptr")
            constants = {"BLOCK": triton_backend.BLOCK, "INDEX64": index64}
        else:
            kernel = triton_backend._splat_backward
            pointers = ("grad_output_ptr", "input_ptr", "flow_ptr", "grad_input_ptr", "grad_flow_ptr")
            constants = {"BLOCK": triton_backend.BLOCK, "INDEX64": index64, "NEED_INPUT": needs[0],
                         "NEED_FLOW": needs[1]}
        signature = {**{p: "*" + dtype for p in pointers}, **sizes, **{k: "constexpr" for k in constants}}
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants), target=target,
                                  options={"num_warps": 4})
        variant = (kind, dtype, index64, needs)
        assert compiled.asm["cubin"], variant
        assert ("i64" in compiled.asm["ttir"]) == index64, variant
        assert ("atom.global" in compiled.asm["ptx"]) == (kind == "forward"), variant
