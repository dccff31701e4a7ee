"""The protocol every splatting backend implements (:class:`Backend`), and the memory-format helpers they share.

A backend computes the summation splat and its two gradients for tensors on the devices it serves; it holds no
autograd (the operators in :mod:`core.ops.operators` register the one autograd formula per operator) and knows
nothing about the registry that chooses among backends (:mod:`core.ops.registry`).
"""
import torch


def memory_format(tensor):
    """channels_last for a channels-last (and not also contiguous) tensor, contiguous otherwise: the layout every
    splatting kernel returns its output in."""
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def empty_like_format(like, shape, dtype=None):
    """An empty tensor of ``shape`` on ``like``'s device in ``like``'s memory format (and dtype by default)."""
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device).contiguous(
        memory_format=memory_format(like))


class Backend:
    """A splatting kernel: the summation splat of ``input`` (N x C x H x W, float32 or float64) by ``flow``
    (N x 2 x H x W, pixels, x first, the input's dtype or float32) and its gradients, for tensors on some devices.

    Attributes (class attributes in practice):

    ``name``           what :func:`core.ops.set_backend` and ``UPR_SPLAT_BACKEND`` call it.
    ``device_types``   the device types ("cpu", "cuda", ...) whose automatic choice includes it, in the order
                       of registration; None: every device (after the device's own backends).
    ``deterministic``  whether it gives the same bits on every run (no atomic adds). Under
                       ``torch.use_deterministic_algorithms(True)`` the automatic choice skips the others.
    ``layout``         the name of its prepared-flow layout when it splits a splat into ``prepare`` (the flow-only
                       work) and ``apply`` (per input); None when it has no preparation (the "direct" layout).

    Methods:

    ``available()``                     whether it can run at all here (importable, built); may be slow the
                                        first time, must be cheap after (cache it).
    ``why_not(device_type)``            None when it can splat tensors on that device now, else the reason,
                                        completing "splatting backend 'NAME' was forced but ...".
    ``layout_for(device_type)``         its layout for tensors on that device (default: ``layout``).
    ``splat_sum(input, flow)``          -> N x C x H x W in the input's memory format (:func:`memory_format`).
    ``splat_sum_backward(grad_output, input, flow, need_input, need_flow)``
                                        -> (gradient w.r.t. the input or None, w.r.t. the flow or None); the
                                        flow's gradient is that of the bilinear weights with floor(x + flow)
                                        held constant. ``input`` may be None when ``need_flow`` is False.

    A backend with a layout also has (``prepared`` is the tuple (index, offsets, weight) that ``prepare``
    returns; unused entries are empty tensors):

    ``prepare(flow)``                   -> prepared
    ``prepared_like(flow)``             -> empty tensors of the shapes and dtypes ``prepare`` returns (for fake
                                        tensors: ``torch.compile``, ``torch.export``)
    ``apply(input, flow, prepared, y0, y1)``
                                        -> output rows y0 .. y1-1, N x C x (y1-y0) x W, input's memory format
    ``apply_backward_input(grad_output, flow, prepared, y0)``
                                        -> N x C x H x W, from the gradient of output rows y0 ..
    ``apply_backward_flow(grad_output, input, flow, prepared, y0)``
                                        -> N x 2 x H x W

    and ``splat_sum`` / ``splat_sum_backward`` default to prepare + apply over all rows. A backend without
    preparation around two whole-frame kernels can derive from :class:`WholeFrame`.
    """
    name = None
    device_types = ()
    deterministic = False
    layout = None

    def available(self):
        return True

    def why_not(self, device_type):
        if self.device_types is not None and device_type not in self.device_types:
            return f"the tensor is on {device_type}"
        if not self.available():
            return "it is not available here"
        return None

    def layout_for(self, device_type):
        return self.layout

    def splat_sum(self, input, flow):
        return self.apply(input, flow, self.prepare(flow), 0, input.shape[2])

    def splat_sum_backward(self, grad_output, input, flow, need_input, need_flow):
        prepared = self.prepare(flow)
        grad_input = self.apply_backward_input(grad_output, flow, prepared, 0) if need_input else None
        grad_flow = self.apply_backward_flow(grad_output, input, flow, prepared, 0) if need_flow else None
        return grad_input, grad_flow

    def __repr__(self):
        return f"<splatting backend {self.name!r}>"


class WholeFrame(Backend):
    """A backend without preparation around two kernels that take and return contiguous tensors:
    ``forward(input, flow) -> output`` and ``backward(grad_output, input, flow, need_input, need_flow)``; it
    returns the output in the input's memory format and passes an empty stand-in for an input that only the
    flow's gradient reads."""

    def __init__(self, forward, backward):
        self._forward, self._backward = forward, backward

    def splat_sum(self, input, flow):
        return self._forward(input, flow).contiguous(memory_format=memory_format(input))

    def splat_sum_backward(self, grad_output, input, flow, need_input, need_flow):
        if input is None:      # only its shape and dtype are read
            input = torch.empty(grad_output.shape, dtype=grad_output.dtype, device=grad_output.device)
        return self._backward(grad_output, input, flow, need_input, need_flow)
