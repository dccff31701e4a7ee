"""torch.compile (fullgraph) and torch.export of the whole model through the torch.ops.upr operators (CPU).

A small input (64x64) and a one-level pyramid keep tracing short on a 2-core machine; the one level still runs
every operator (splat preparation and application with both gradients, the normaliser cache, correlation). The
training step uses the aot_eager backend (AOTAutograd traces forward and backward through the registered
autograd formulas; Inductor's C++ compile of a backward graph would add minutes); Inductor compiles inference.
"""
import pytest
import torch

import core
from core.ops import registry


def _model_and_frames(seed=0, size=64):
    torch.manual_seed(seed)
    model = core.build_model("base", pyr_level=1)
    img0, img1 = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
    return model, img0, img1


def _assert_close(ours, reference, tolerance, what):
    scale = max(1.0, reference.abs().max().item())
    assert (ours - reference).abs().max().item() <= tolerance * scale, what


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_inductor_compiled_inference_equals_eager():
    model, img0, img1 = _model_and_frames()
    model.eval()
    with torch.no_grad():
        eager = model(img0, img1, 0.5)
        compiled = torch.compile(model, fullgraph=True)(img0, img1, 0.5)
    _assert_close(compiled[0], eager[0], 1e-4, "frame")
    _assert_close(compiled[1], eager[1], 1e-3, "flow")


def test_compiled_training_step_gives_eager_gradients():
    model, img0, img1 = _model_and_frames(seed=1)
    model.train()
    target = torch.rand(1, 3, 64, 64)

    def step(forward):
        model.zero_grad(set_to_none=True)
        interp, flow, _ = forward(img0, img1, 0.5)
        loss = (interp - target).abs().mean() + 1e-3 * flow.abs().mean()
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    eager_loss, eager_grads = step(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled_loss, compiled_grads = step(compiled)
    _assert_close(compiled_loss, eager_loss, 1e-5, "loss")
    assert eager_grads.keys() == compiled_grads.keys() and len(eager_grads) == len(list(model.parameters()))
    motion_grads = 0
    for name, grad in eager_grads.items():
        _assert_close(compiled_grads[name], grad, 1e-4, name)
        motion_grads += name.startswith("motion_estimator") and grad.abs().sum().item() > 0
    assert motion_grads > 0     # the flow gradient reached the motion estimator through the splats


def test_export_captures_the_model_with_the_operators():
    model, img0, img1 = _model_and_frames(seed=2)
    model.eval()
    program = torch.export.export(model, (img0, img1, 0.5))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert {"upr.splat_prepare.default", "upr.splat_apply.default", "upr.correlation.default"} <= targets
    with torch.no_grad():
        exported = program.module()(img0, img1, 0.5)
        eager = model(img0, img1, 0.5)
    _assert_close(exported[0], eager[0], 1e-5, "frame")
    _assert_close(exported[1], eager[1], 1e-4, "flow")


def test_compiled_splat_follows_a_forced_backend(monkeypatch):
    """The layout is chosen while tracing and guarded on: forcing another backend recompiles."""
    torch.manual_seed(3)
    inp, flow = torch.rand(1, 4, 12, 10), torch.randn(1, 2, 12, 10) * 2
    compiled = torch.compile(lambda i, f: core.ops.splat(i, f), fullgraph=True, backend="eager")
    eager = core.ops.splat(inp, flow)
    calls = []

    def recording(name, apply):
        def recorded(*args):
            calls.append(name)
            return apply(*args)
        return recorded

    for name in ("cpp", "torch"):
        monkeypatch.setattr(registry.backend(name), "apply", recording(name, registry.backend(name).apply))
    _assert_close(compiled(inp, flow), eager, 1e-6, "auto")
    with registry.forced("torch"):
        _assert_close(compiled(inp, flow), eager, 1e-6, "torch")
    assert calls == ["cpp", "cpp", "torch", "torch"]    # the input and the normaliser, per backend
