"""Cases for the GPU splatting kernels, shared by tests/test_gpu_kernels.py (in process) and by Triton's interpreter
(``TRITON_INTERPRET=1 python tests/gpu_kernel_cases.py cases.pt results.pt``, a fresh process so that the
interpreter is on when the kernels are decorated).

A kernel is given as *ops*: ``forward(input, flow, index64) -> output`` and
``backward(grad_output, input, flow, need_input, need_flow, index64) -> (grad_input | None, grad_flow | None)``.
:func:`run_cases` runs every case through the ops and returns a flat {name: tensor or None} dict; the tests compare
the dicts of the kernels with that of the pure-PyTorch reference, with the reference vectors and with hand-computed
values.
"""
import os
import sys

import torch

MODES = ("summation", "average", "linear", "softmax")


def compose_splat(splat_sum, input, flow, metric, mode):
    """Every splatting mode built from a summation splat, as documented in core/ops/softsplat.py."""
    if mode == "summation":
        return splat_sum(input, flow)
    if mode == "average":
        weight = torch.ones_like(input[:, :1])
    elif mode == "linear":
        weight = metric
    else:
        weight = torch.exp(metric)
    normaliser = splat_sum(weight, flow)
    normaliser = torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)
    return splat_sum(input * weight, flow) / normaliser


def differentiable(ops, index64=None):
    """ops -> a differentiable summation splat ``f(input, flow)``."""
    class Sum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, flow):
            ctx.save_for_backward(input, flow)
            return ops.forward(input, flow, index64)

        @staticmethod
        def backward(ctx, grad_output):
            input, flow = ctx.saved_tensors
            return ops.backward(grad_output, input, flow, ctx.needs_input_grad[0], ctx.needs_input_grad[1], index64)

    return Sum.apply


def _grid(h, w, dtype=torch.float32):
    return torch.stack([torch.arange(w, dtype=dtype).expand(h, w), torch.arange(h, dtype=dtype)[:, None].expand(h, w)])


def build_cases(vectors):
    """{"sums": {name: (input, flow, grad_output)}, "modes": {name: (input, flow, metric, mode, weight)}}: the
    reference vectors and small hand-made cases (each a few hundred pixels: the interpreter is slow)."""
    generator = torch.Generator().manual_seed(27)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    sums, modes = {}, {}
    for i, case in enumerate(vectors["softsplat_cases"]):
        modes[f"vector{i}"] = (case["input"], case["flow"], case["metric"], case["mode"], None)
    for i, case in enumerate(vectors["softsplat_grad_cases"]):
        modes[f"vector_grad{i}"] = (case["input"], case["flow"], case["metric"], case["mode"], case["weight"])

    for dtype, name in ((torch.float32, "random32"), (torch.float64, "random64")):
        flow = randn(2, 2, 11, 13, dtype=dtype) * 4           # converging, diverging and off-frame targets
        flow[1, :, :2] = 1e7                                   # far off the frame
        flow[0, 0, 3, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30], dtype=dtype)
        flow[0, 1, 5, :3] = torch.tensor([-1e30, float("nan"), 3e9], dtype=dtype)
        sums[name] = (randn(2, 3, 11, 13, dtype=dtype), flow, randn(2, 3, 11, 13, dtype=dtype))
    integer = torch.zeros(2, 2, 9, 11)
    integer[:, 0], integer[:, 1] = 2.0, -1.0                  # right by 2, up by 1
    sums["integer"] = (randn(2, 3, 9, 11), integer, randn(2, 3, 9, 11))
    half = torch.zeros(1, 2, 4, 4)
    half[0, :, 1, 1] = 0.5
    one = torch.zeros(1, 1, 4, 4)
    one[0, 0, 1, 1] = 1.0
    sums["half"] = (one, half, randn(1, 1, 4, 4))
    far = torch.full((2, 2, 6, 7), 100.0)
    far[1, 0], far[1, 1, :3], far[1, 1, 3:] = -1e30, 1e30, 7.5   # off the frame in x; in frame in y for some
    sums["far"] = (randn(2, 2, 6, 7), far, randn(2, 2, 6, 7))
    nonfinite = randn(1, 2, 6, 8)
    nonfinite[0, 0, 2, 3], nonfinite[0, 1, 4, 5], nonfinite[0, 0, 1, 1] = float("nan"), float("inf"), -float("inf")
    sums["nonfinite"] = (randn(1, 2, 6, 8), nonfinite, randn(1, 2, 6, 8))
    # every pixel onto target (0.25, 0.5): many contributions to the same four outputs within one block
    sums["converge"] = (randn(2, 2, 6, 8), -_grid(6, 8).expand(2, 2, 6, 8) + torch.tensor([0.25, 0.5]).view(1, 2, 1, 1),
                        randn(2, 2, 6, 8))
    sums["one_column"] = (randn(2, 1, 6, 1), randn(2, 2, 6, 1) * 0.7, randn(2, 1, 6, 1))
    sums["one_row"] = (randn(1, 5, 1, 7), randn(1, 2, 1, 7) * 2, randn(1, 5, 1, 7))
    sums["no_channels"] = (randn(1, 0, 3, 4), randn(1, 2, 3, 4), randn(1, 0, 3, 4))

    for mode in MODES:
        metric = None
        if mode == "linear":
            metric = torch.rand(2, 1, 8, 10, generator=generator) + 0.5
        elif mode == "softmax":
            metric = randn(2, 1, 8, 10)
        flow = randn(2, 2, 8, 10) * 3
        flow[0, :, 0, 0] = float("nan")
        modes[f"random_{mode}"] = (randn(2, 3, 8, 10), flow, metric, mode, randn(2, 3, 8, 10))
    zero = torch.zeros(1, 2, 6, 7)
    modes["average_zero_flow"] = (randn(1, 4, 6, 7), zero, None, "average", None)
    modes["average_far"] = (randn(1, 4, 6, 7), zero + 100.0, None, "average", None)
    return {"sums": sums, "modes": modes}


def run_cases(ops, cases):
    """Every case through ``ops``: {name: tensor or None}."""
    results = {}
    for name, (input, flow, grad_output) in cases["sums"].items():
        for index64 in (False, True):
            tag = f"{name}/{'int64' if index64 else 'int32'}"
            results[f"{tag}/output"] = ops.forward(input, flow, index64)
            results[f"{tag}/grad_input"], results[f"{tag}/grad_flow"] = ops.backward(
                grad_output, input, flow, True, True, index64)
        for alone, needs in (("input_only", (True, False)), ("flow_only", (False, True))):
            results[f"{name}/{alone}/grad_input"], results[f"{name}/{alone}/grad_flow"] = ops.backward(
                grad_output, input, flow, *needs, None)
    splat_sum = differentiable(ops)
    for name, (input, flow, metric, mode, weight) in cases["modes"].items():
        if weight is None:
            with torch.no_grad():
                results[f"{name}/output"] = compose_splat(splat_sum, input, flow, metric, mode)
            continue
        leaves = [input.clone().requires_grad_(), flow.clone().requires_grad_()]
        if metric is not None:
            leaves.append(metric.clone().requires_grad_())
        output = compose_splat(splat_sum, leaves[0], leaves[1], leaves[2] if metric is not None else None, mode)
        grads = torch.autograd.grad((output * weight).sum(), leaves)
        results[f"{name}/output"] = output.detach()
        for key, grad in zip(("grad_input", "grad_flow", "grad_metric"), grads):
            results[f"{name}/{key}"] = grad
    return results


class TritonOps:
    """core.ops.backends.triton as ops."""

    def __init__(self):
        from core.ops.backends import triton
        self.kernels = triton

    def forward(self, input, flow, index64):
        return self.kernels.splat_sum(input, flow, index64=index64)

    def backward(self, grad_output, input, flow, need_input, need_flow, index64):
        return self.kernels.splat_sum_backward(grad_output, input, flow, need_input, need_flow, index64=index64)


def main(cases_path, results_path):
    from core.ops.backends import triton
    if not (triton.interpreted() and triton.available()):
        raise SystemExit("run with TRITON_INTERPRET=1 (and triton installed)")
    cases = torch.load(cases_path, weights_only=True)
    torch.save(run_cases(TritonOps(), cases), results_path)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(*sys.argv[1:])
