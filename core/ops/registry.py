"""The splatting backends, and which one serves a tensor.

Backends (:class:`core.ops.backends.base.Backend`) are registered by name; each lists the device types whose
automatic choice includes it (``device_types``, None for every device). For a device the candidates are, in
priority order, the backends registered for that device type (in registration order, or ``before`` another) and
then those registered for every device. The built-in ones give:

    CPU     the C++ kernel ("cpp") when it builds, the reference ("torch") otherwise.
    CUDA    Triton ("triton") when triton is importable, else CuPy ("cupy") when CuPy is, else the reference.
    other   (MPS, ...) the reference (its scatter form: no embedding_bag there).

The automatic choice is the first candidate that can serve the device now (``why_not(device_type)`` is None) and,
under ``torch.use_deterministic_algorithms(True)``, is ``deterministic`` (on CUDA: the sorted reference instead of
the atomic-add kernels). ``UPR_SPLAT_BACKEND=auto|torch|cpp|cupy|triton`` (read at import) or :func:`set_backend`
forces one by name; a forced backend that cannot serve a tensor raises RuntimeError when the kernel runs.

Adding a backend: a module with a :class:`~core.ops.backends.base.Backend` subclass, and one line
``register_backend(module.BACKEND)`` (below for a built-in one; :func:`registered` for a while, as the tests do).

Choices are cached per (device type, forced backend, determinism); availability is taken to be constant within a
process: call :func:`refresh` after changing it (tests do). Under ``torch.compile`` the choice is made while
tracing, guarded on the forced backend and the registry's generation (:func:`layout_for`).
"""
import contextlib
import os
import warnings

import torch

from .backends import cpp, cupy, reference, triton

AUTO = "auto"
DIRECT = "direct"
"""The layout of a backend without preparation: ``splat_prepare`` returns empty tensors, ``splat_apply`` splats
whole frames with the device's backend."""

_backends = {}           # name -> backend, in priority order
_layouts = {}            # layout name -> the backend that prepares and applies it
_choices = {}            # (device type, forced, deterministic) -> backend
_forced = AUTO
_generation = 0          # bumped by every change: compiled code guards on it


def refresh():
    """Forget the cached choices (after a backend's availability changed)."""
    global _generation
    _choices.clear()
    _generation += 1


def register_backend(backend, before=None):
    """Add ``backend`` (a :class:`~core.ops.backends.base.Backend`); among a device's candidates it comes after
    those registered earlier, or just before the backend named ``before``."""
    if not backend.name or backend.name == AUTO or backend.name in _backends:
        raise ValueError(f"cannot register a splatting backend named {backend.name!r} (taken or reserved)")
    if backend.layout in _layouts or backend.layout == DIRECT:
        raise ValueError(f"splat layout {backend.layout!r} is taken")
    items = list(_backends.items())
    position = len(items) if before is None else [name for name, _ in items].index(before)
    items.insert(position, (backend.name, backend))
    _backends.clear()
    _backends.update(items)
    if backend.layout is not None:
        _layouts[backend.layout] = backend
    refresh()


def unregister_backend(name):
    """Remove the backend ``name``; if it was forced, the choice returns to "auto"."""
    global _forced
    backend = _backends.pop(name)
    if backend.layout is not None:
        del _layouts[backend.layout]
    if _forced == name:
        _forced = AUTO
    refresh()


@contextlib.contextmanager
def registered(backend, before=None):
    """``backend`` registered while the context is open."""
    register_backend(backend, before)
    try:
        yield backend
    finally:
        unregister_backend(backend.name)


def names():
    """("auto", then every registered backend's name in priority order)."""
    return (AUTO, *_backends)


def __getattr__(name):
    if name == "BACKENDS":   # always the current registry
        return names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend(name):
    """The registered backend called ``name``."""
    return _backends[name]


def layouts():
    return (DIRECT, *_layouts)


def layout_backend(layout):
    """The backend whose prepared tensors ``layout`` names."""
    try:
        return _layouts[layout]
    except KeyError:
        raise ValueError(f"unknown splat layout {layout!r}; use one of {layouts()}") from None


def set_backend(name):
    """Force a splatting backend ("torch", "cpp", "cupy", "triton", or any registered one) or let the device choose
    ("auto")."""
    global _forced
    if name not in names():
        raise ValueError(f"unknown splatting backend {name!r}; use one of {names()}")
    _forced = name


def get_backend():
    return _forced


@contextlib.contextmanager
def forced(name):
    """:func:`set_backend` (``name``) while the context is open, the previous choice restored after."""
    previous = _forced
    set_backend(name)
    try:
        yield _backends.get(name)
    finally:
        set_backend(previous if previous in names() else AUTO)


def candidates(device_type):
    """The backends the automatic choice considers for ``device_type``, in priority order."""
    own = [b for b in _backends.values() if b.device_types is not None and device_type in b.device_types]
    return own + [b for b in _backends.values() if b.device_types is None]


def _choose(device_type, forced, deterministic):
    if forced != AUTO:
        chosen = _backends[forced]
        reason = chosen.why_not(device_type)
        if reason is not None:
            raise RuntimeError(f"splatting backend {forced!r} was forced but {reason}")
        if deterministic and not chosen.deterministic:
            raise RuntimeError(f"splatting backend {forced!r} was forced but is not deterministic (atomic adds) and "
                               "torch.use_deterministic_algorithms(True) is set; use 'auto' or 'torch' (the sorted "
                               "reference)")
        return chosen
    for candidate in candidates(device_type):
        if (candidate.deterministic or not deterministic) and candidate.why_not(device_type) is None:
            return candidate
    raise RuntimeError(f"no splatting backend can serve {device_type} tensors")


def backend_for(device_type, deterministic=None, forced=None):
    """The backend that splats tensors on ``device_type`` ("cpu", "cuda", "mps", ...) under the forced backend
    (default :func:`get_backend`) and determinism setting (default ``torch.are_deterministic_algorithms_enabled()``).
    A forced backend that cannot serve the device raises RuntimeError."""
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    key = (device_type, _forced if forced is None else forced, deterministic)
    try:
        return _choices[key]
    except KeyError:
        chosen = _choices[key] = _choose(*key)
        return chosen


def layout_for(device_type):
    """The layout ``Splatting`` prepares flows on ``device_type`` in: the chosen backend's, or "direct"."""
    return _layout(device_type, _forced, torch.are_deterministic_algorithms_enabled(), _generation)


@torch.compiler.assume_constant_result     # called once while tracing, not traced (availability may build the kernel)
def _layout(device_type, forced, deterministic, generation):
    return backend_for(device_type, deterministic, forced).layout_for(device_type) or DIRECT


register_backend(cpp.BACKEND)
register_backend(triton.BACKEND)
register_backend(cupy.BACKEND)
register_backend(reference.BACKEND)

_forced = os.environ.get("UPR_SPLAT_BACKEND", AUTO)
if _forced not in names():
    warnings.warn(f"UPR_SPLAT_BACKEND={_forced!r} is not one of {names()}; using 'auto'", RuntimeWarning)
    _forced = AUTO
