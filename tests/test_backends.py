"""The splatting backend registry: which backend serves which device, forcing one, determinism, registering a new
one (tests/wrapped_backend.py: one file plus one registry line; tests/test_ops.py runs the kernel tests through
it), and the protocol the backends keep. The kernels themselves are tested in tests/test_ops.py."""
import os
import subprocess
import sys

import pytest
import torch

import wrapped_backend
from core.ops import operators, registry, softsplat, splat
from core.ops import backends
from core.ops.backends import base, correlation, cpp, cupy, reference, triton

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def gpu_kernels(monkeypatch):
    """Triton and CuPy importable with a CUDA device present, as far as the registry can tell; the choices are
    recomputed before and after."""
    monkeypatch.setattr(triton, "available", lambda: True)
    monkeypatch.setattr(cupy, "available", lambda: True)
    monkeypatch.setattr(triton, "_INTERPRET", False)
    registry.refresh()
    yield monkeypatch
    monkeypatch.undo()
    registry.refresh()


def choose(device_type, forced=None):
    return registry.backend_for(device_type, deterministic=False, forced=forced).name


def test_kernel_selection_per_device(gpu_kernels):
    """CPU -> cpp, CUDA -> triton, else cupy, else the reference; other devices the reference's scatter form;
    forced backends that cannot serve a device raise."""
    assert choose("cpu") == "cpp"
    assert choose("cuda") == "triton" and registry.backend("triton").layout_for("cuda") is None
    assert choose("cuda", "cupy") == "cupy"
    assert choose("mps") == "torch" and registry.backend("torch").layout_for("mps") is None
    gpu_kernels.setattr(triton, "available", lambda: False)
    registry.refresh()
    assert choose("cuda") == "cupy"
    with pytest.raises(RuntimeError, match="'triton' was forced but cannot splat CUDA tensors"):
        choose("cuda", "triton")
    gpu_kernels.setattr(cupy, "available", lambda: False)
    registry.refresh()
    assert choose("cuda") == "torch" and registry.backend("torch").layout_for("cuda") == "bags"
    with pytest.raises(RuntimeError, match="CuPy is not importable"):
        choose("cuda", "cupy")
    with pytest.raises(RuntimeError, match="'cpp' was forced"):
        choose("cuda", "cpp")
    with pytest.raises(RuntimeError, match="'cpp' was forced"):
        choose("mps", "cpp")
    with pytest.raises(RuntimeError, match="'cupy' was forced but the tensor is not on a CUDA device"):
        choose("cpu", "cupy")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        choose("cpu", "triton")
    for device in ("cpu", "cuda", "mps"):
        assert choose(device, "torch") == "torch"


def test_deterministic_mode_selects_the_sorted_reference_for_cuda_tensors(gpu_kernels):
    assert registry.backend_for("cuda").name == "triton"
    mode, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert registry.backend_for("cuda").name == "torch"
        assert registry.backend_for("cpu").name == "cpp"          # the C++ kernel is deterministic
        assert registry.layout_for("cpu") == "cells"
        for forced in ("triton", "cupy"):
            with pytest.raises(RuntimeError, match="not deterministic"):
                registry.backend_for("cuda", forced=forced)
        inp, flow = torch.rand(1, 2, 6, 5), torch.randn(1, 2, 6, 5)
        assert torch.equal(splat(inp, flow), splat(inp, flow))
    finally:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    assert registry.backend_for("cuda").name == "triton"


def test_a_registered_backend_is_forcible_leaves_auto_alone_and_goes_away():
    inp, flow = torch.rand(1, 3, 7, 6), torch.randn(1, 2, 7, 6) * 2
    with registry.forced("torch"):
        expected = splat(inp, flow)
    with registry.registered(wrapped_backend.BACKEND):
        assert "wrapped" in registry.names() and "wrapped" in registry.BACKENDS
        assert choose("cpu") == "cpp" and registry.candidates("cpu")[:2] == [cpp.BACKEND, wrapped_backend.BACKEND]
        registry.set_backend("wrapped")
        assert registry.backend_for("cpu").name == "wrapped" and registry.layout_for("cpu") == registry.DIRECT
        assert torch.allclose(splat(inp, flow), expected, atol=1e-6)
        with pytest.raises(RuntimeError, match="'wrapped' was forced but the tensor is on cuda"):
            registry.backend_for("cuda")
    assert "wrapped" not in registry.names() and registry.get_backend() == "auto"   # unregistered while forced
    with pytest.raises(ValueError, match="unknown splatting backend"):
        registry.set_backend("wrapped")


def test_a_backend_registered_before_another_takes_its_place_in_the_automatic_choice():
    with registry.registered(wrapped_backend.BACKEND, before="cpp"):
        assert choose("cpu") == "wrapped"
        assert [b.name for b in registry.candidates("cpu")] == ["wrapped", "cpp", "torch"]
    assert choose("cpu") == "cpp"


def test_names_and_layouts_are_unique():
    class Clash(base.Backend):
        name = "torch"

    with pytest.raises(ValueError, match="taken"):
        registry.register_backend(Clash())
    Clash.name, Clash.layout = "clash", "cells"
    with pytest.raises(ValueError, match="taken"):
        registry.register_backend(Clash())
    assert "clash" not in registry.names()
    with pytest.raises(ValueError, match="unknown splat layout 'rows'"):
        torch.ops.upr.splat_prepare(torch.zeros(1, 2, 3, 4), "rows")


def test_the_environment_variable_forces_a_backend():
    code = "from core.ops import registry; print(registry.get_backend())"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    for value, expected in (("torch", "torch"), ("fortran", "auto")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                              env=dict(env, UPR_SPLAT_BACKEND=value), timeout=120)
        assert done.returncode == 0 and done.stdout.split()[-1] == expected, done.stderr[-2000:]
        assert ("is not one of" in done.stderr) == (value == "fortran")


def test_backends_keep_the_protocol_and_hold_no_autograd():
    for name in registry.names()[1:]:
        backend = registry.backend(name)
        assert isinstance(backend, base.Backend) and backend.name == name
        assert isinstance(backend.deterministic, bool)
        if backend.layout is not None:
            assert registry.layout_backend(backend.layout) is backend
            for method in ("prepare", "prepared_like", "apply", "apply_backward_input", "apply_backward_flow"):
                assert callable(getattr(backend, method, None)), (name, method)
    for module in (backends, base, correlation, cpp, cupy, reference, triton):
        for value in vars(module).values():
            assert not (isinstance(value, type) and issubclass(value, torch.autograd.Function)), (module, value)


def test_the_splatting_operators_have_a_kernel_per_device_type():
    """Registered per device type with the dispatcher ("cpu", "cuda"), the default serving the others."""
    for name in operators.OPS:
        qualified = f"upr::{name}"
        splatting = name.startswith("splat")
        for key in ("CPU", "CUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, key) == splatting, (name, key)
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CompositeExplicitAutograd"), name
