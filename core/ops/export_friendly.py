"""The export switch: inside :func:`exporting`, splatting and the correlation run as plain tensor ops an exporter
can trace (the operators use data-dependent sizes, ``as_strided`` and custom kernels that ONNX cannot express)::

    with core.ops.export_friendly.exporting():
        torch.onnx.export(model, ...)    # splatting -> ScatterElements(reduction="add"), correlation -> Mul/ReduceSum

Two places read it, once each: :class:`core.ops.softsplat.Splatting` when it is made (``splat`` and ``splat_sum``
make one; its splats then use :func:`core.ops.backends.reference.scatter_sum`), and
:func:`core.ops.correlation.correlation` (shifted products). The summation order differs from the other forms, so
results agree to float rounding, not bit for bit. Outside the context nothing changes.

:func:`active` is a process-wide flag (not thread-local): do not export while another thread runs the model.
"""
import contextlib

_depth = 0


def active():
    """Whether :func:`exporting` is open."""
    return _depth > 0


@contextlib.contextmanager
def exporting():
    """Route splatting and the correlation to the export-friendly ops while the context is open (re-entrant)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
