"""A splatting backend defined outside core/ops, as a new one would be: this file plus one line,
``core.ops.registry.register_backend(wrapped_backend.BACKEND)`` (the tests use ``registry.registered`` to add it for
one test). It wraps the reference's whole-frame splat and gradients, has no preparation (the "direct" layout) and
serves CPU tensors when forced; the automatic choice keeps the backends registered before it."""
from core.ops.backends import reference
from core.ops.backends.base import Backend


class Wrapped(Backend):
    name = "wrapped"
    device_types = ("cpu",)
    deterministic = True

    def splat_sum(self, input, flow):
        return reference.BACKEND.splat_sum(input, flow)

    def splat_sum_backward(self, grad_output, input, flow, need_input, need_flow):
        return reference.BACKEND.splat_sum_backward(grad_output, input, flow, need_input, need_flow)


BACKEND = Wrapped()
