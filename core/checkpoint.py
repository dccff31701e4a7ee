"""Checkpoint I/O: official UPR-Net state dicts, safetensors, and atomic saving.

Official checkpoints (``upr-base.pkl``, ``upr-large.pkl``, ``upr-llarge.pkl``) are plain state dicts saved from
DDP, so their keys carry a ``module.`` prefix; they load unchanged. Put in ``checkpoints/`` under the names of the
original README (or their own), they are found by model size alone (:func:`default_model_file`).
Nothing is ever unpickled beyond tensors:
``.pkl``/``.pth``/``.pt`` files go through ``torch.load(..., weights_only=True)``.

Weights saved here (:func:`save_weights`) also record the model's size name and :class:`~core.options.ModelOptions`
(:data:`MODEL_OPTIONS_KEY`), so :func:`load_model` builds the right network from the file alone, custom widths
included; files without them (the official ones) are sized from their tensors.
"""
import dataclasses
import json
import os
import pickle
import tempfile
import warnings

import torch

from .model import UPRNet
from .options import MODEL_SIZES, ModelOptions

_SIZE_PROBE_KEY = "feat_pyramid.conv_stage0.0.weight"

CHECKPOINTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints")
"""The repository's ``checkpoints/`` folder: where the shipped weights live and official ones are looked for."""

DEFAULT_CHECKPOINT_NAMES = {
    "base": ("upr.pkl", "upr-base.pkl"),
    "large": ("upr_large.pkl", "upr-large.pkl"),
    "LARGE": ("upr_llarge.pkl", "upr-llarge.pkl"),
}
"""File names in :data:`CHECKPOINTS_DIR` tried in order for each model size when no file is given: the names the
original README uses, then the official release's names. ``upr-base.pkl`` is also the shipped checkpoint (trained
here), so for base an official ``upr.pkl`` placed beside it takes precedence."""


MODEL_OPTIONS_KEY = "__model_options__"
"""Where a weights file records its model: in a torch file (.pkl/.pth/.pt) a reserved key beside the tensors whose
value is a dict of plain values (``{"model_size": "base", "feature_channels": 16, "motion_channels": [160, ...],
...}``: ``torch.load(weights_only=True)`` reads it, and a non-strict ``load_state_dict`` ignores it); in a
.safetensors file the same dict as JSON in the metadata. :func:`read_state_dict` leaves it out."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def options_record(model_size, options):
    """The plain-value dict saved under :data:`MODEL_OPTIONS_KEY` for a model of ``model_size`` / ``options``."""
    record = {"model_size": str(model_size), **dataclasses.asdict(options)}
    record["motion_channels"] = list(options.motion_channels)
    return record


def options_from_record(record, name="checkpoint"):
    """(model size name, :class:`ModelOptions`) of a record written by :func:`options_record`."""
    fields = {field.name for field in dataclasses.fields(ModelOptions)}
    try:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k != "model_size"}
        if not set(values) <= fields or not all(isinstance(v, (int, tuple)) for v in values.values()):
            raise TypeError
        return str(record.get("model_size", "custom")), ModelOptions(**values)
    except (TypeError, AttributeError):
        raise CheckpointError(f"{name}: unreadable model options {record!r}") from None


def read_checkpoint(path):
    """(state dict, (model size name, :class:`ModelOptions`) or None) of the weights file ``path`` (.pkl/.pth/.pt
    via weights_only torch.load, or .safetensors). The options are None where the file records none (official
    files, weights saved before options were recorded).

    Dicts that wrap the weights under "model" (this project's training checkpoints) or "state_dict" are
    accepted too; their weights are returned.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    record = None
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, framework="pt", device="cpu") as f:
                state = {key: f.get_tensor(key) for key in f.keys()}
                text = (f.metadata() or {}).get(MODEL_OPTIONS_KEY)
            record = json.loads(text) if text else None
        else:
            with warnings.catch_warnings():    # torch warns about pickle protocols before failing on garbage
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message advises weights_only=False, which we never do
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt, or it pickles Python objects other than "
                              f"tensors and containers (checkpoints are loaded with weights_only=True)") from None
    except Exception as error:  # truncated, empty, or not a checkpoint at all
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from None
    for wrapper in (None, "model", "state_dict"):  # training checkpoints and {"state_dict": ...} files
        if wrapper is not None and isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
        if isinstance(state, dict) and isinstance(state.get(MODEL_OPTIONS_KEY), dict):
            state = dict(state)
            record = state.pop(MODEL_OPTIONS_KEY)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state, (None if record is None else options_from_record(record, path))


def read_state_dict(path):
    """The state dict of ``path`` (see :func:`read_checkpoint`; recorded model options left out)."""
    return read_checkpoint(path)[0]


def default_model_file(model_size="base"):
    """The weights to load for ``model_size`` when no file is given: the first of
    :data:`DEFAULT_CHECKPOINT_NAMES` [model_size] that exists in :data:`CHECKPOINTS_DIR`.

    Raises :class:`CheckpointError` (one line: where to put the file) when none exists.
    """
    names = DEFAULT_CHECKPOINT_NAMES.get(model_size)
    if names is None:
        raise CheckpointError(f"unknown model size {model_size!r}; expected one of "
                              f"{', '.join(DEFAULT_CHECKPOINT_NAMES)}")
    for name in names:
        path = os.path.join(CHECKPOINTS_DIR, name)
        if os.path.isfile(path):
            return path
    where = " or ".join(os.path.join(CHECKPOINTS_DIR, name) for name in names)
    if model_size == "base":
        raise CheckpointError(f"no base weights: the shipped checkpoint is missing; put the official weights at "
                              f"{where}, or pass the file (--model_file)")
    raise CheckpointError(f"no checkpoint ships for model size {model_size!r}: put the official weights at "
                          f"{where}, or pass the file (--model_file)")


def strip_prefix(state_dict, prefix="module."):
    """Drop a DDP ``module.`` (or torch.compile ``_orig_mod.``) prefix from every key that has it."""
    for p in (prefix, "_orig_mod."):
        if state_dict and all(k.startswith(p) for k in state_dict):
            state_dict = {k[len(p):]: v for k, v in state_dict.items()}
    return state_dict


def guess_model_size(state_dict):
    """Name of the official size whose widths match ``state_dict``, or None."""
    weight = state_dict.get(_SIZE_PROBE_KEY)
    if weight is None:
        return None
    for name, options in MODEL_SIZES.items():
        if weight.shape[0] == options.feature_channels:
            return name
    return None


def _named_state_dict(source, index=None):
    """(display name, state dict without ``module.``) of ``source``: a checkpoint path or a state dict."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), strip_prefix(read_state_dict(source))
    state = {k: v for k, v in source.items() if k != MODEL_OPTIONS_KEY}   # e.g. a torch.load-ed file of ours
    return ("state dict" if index is None else f"state dict {index}"), strip_prefix(state)


def load_weights(model, source, strict=True):
    """Load ``source`` (a path or a state dict, with or without ``module.``) into ``model``.

    With ``strict`` every key must be present with the right shape; otherwise a :class:`CheckpointError`
    lists the missing, unexpected and mis-shaped keys and names the model size the weights look like.
    Returns ``model``.
    """
    return _load_named(model, *_named_state_dict(source), strict)


def load_model(path, pyr_level=3, nr_lvl_skipped=0, model_size=None):
    """A :class:`~core.model.UPRNet` built from the weights file ``path`` alone, its weights loaded (strictly).

    The network has the options the file records (:func:`save_weights` records them), named after the official
    size they equal, else after the name saved with them ("custom" where that is an official size's name, e.g. a
    ``UPRNet("base", options=...)`` variant). A file without options (the official ones) is built as
    ``model_size`` when given (a file of other widths is then a :class:`CheckpointError`), else as the official
    size its widths match (:func:`guess_model_size`); none matching is a :class:`CheckpointError`. A file that
    records an official size other than a given ``model_size`` is that same error; one that records a custom
    variant loads as recorded whatever ``model_size`` says.
    """
    path = os.fspath(path)
    state, saved = read_checkpoint(path)
    state = strip_prefix(state)
    if saved is None:
        model_size = model_size or guess_model_size(state)
        if model_size is None:
            raise CheckpointError(f"{path} records no model options and its widths match no official size "
                                  f"({', '.join(MODEL_SIZES)})")
        options = MODEL_SIZES[model_size]
    else:
        saved_name, options = saved
        official = [name for name, known in MODEL_SIZES.items() if known == options]
        if official and model_size is not None and model_size not in official:
            options = MODEL_SIZES[model_size]     # an official size other than asked for: the usual mismatch error
        else:
            model_size = official[0] if official else saved_name if saved_name not in MODEL_SIZES else "custom"
    model = UPRNet(model_size, pyr_level, nr_lvl_skipped, options=options)
    return _load_named(model, path, state, strict=True)


def _load_named(model, name, state, strict):
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
    if misshaped or (strict and (missing or unexpected)):
        lines = [f"{name} does not fit this model"]
        looks_like, is_size = guess_model_size(state), getattr(model, "model_size", None)
        if looks_like and looks_like != is_size:
            lines.append(f"the weights look like model size {looks_like!r}; the model is {is_size!r}")
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:5]) + (f" ... (+{len(keys) - 5} more)" if len(keys) > 5 else "")
                lines.append(f"{len(keys)} {label} key(s): {shown}")
        raise CheckpointError("; ".join(lines))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model


def atomic_save(write, path):
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves a partial file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def model_record(model):
    """The :data:`MODEL_OPTIONS_KEY` record of ``model`` (a UPR-Net, or a wrapper with ``.module``: DDP, an
    ``AveragedModel``), or None when it has no :class:`ModelOptions`."""
    for candidate in (model, getattr(model, "module", None)):
        options = getattr(candidate, "options", None)
        if isinstance(options, ModelOptions):
            return options_record(getattr(candidate, "model_size", "custom"), options)
    return None


def save_weights(model_or_state, path, options=None):
    """Save weights (no ``module.`` prefix) atomically as .safetensors or as a torch file (.pkl/.pth).

    A model's size name and :class:`ModelOptions` are recorded with them (:data:`MODEL_OPTIONS_KEY`); for a bare
    state dict give ``options`` as ``(model_size, ModelOptions)`` to record them (else none are).
    """
    record = model_record(model_or_state) if options is None else options_record(*options)
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    state = {k: v.detach().cpu().contiguous() for k, v in strip_prefix(dict(state)).items()}
    if os.fspath(path).endswith(".safetensors"):
        from safetensors.torch import save_file
        metadata = None if record is None else {MODEL_OPTIONS_KEY: json.dumps(record)}
        atomic_save(lambda tmp: save_file(state, tmp, metadata=metadata), path)
    else:
        if record is not None:
            state[MODEL_OPTIONS_KEY] = record
        atomic_save(lambda tmp: torch.save(state, tmp), path)


def average_weights(sources, weights=None):
    """Weighted element-wise mean of several state dicts of one model (paths or dicts): a "model soup".

    Meant for weights of one lineage (e.g. a run and the run continued from it), which lie in one basin.
    ``weights`` (default: equal) are normalised to sum to 1. Every source must have the same keys and shapes;
    non-float tensors must be equal in all sources. Returns a new state dict (summed in float64, returned in
    each tensor's own dtype).
    """
    if not sources:
        raise CheckpointError("no checkpoints to average")
    weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError(f"need one non-negative weight per checkpoint ({len(sources)}), with a positive "
                              f"sum; got {weights}")
    names, states = zip(*(_named_state_dict(source, i) for i, source in enumerate(sources)))
    first = states[0]
    for name, state in zip(names[1:], states[1:]):
        if state.keys() != first.keys():
            differing = sorted(set(state) ^ set(first))
            raise CheckpointError(f"{name} and {names[0]} have different keys: {', '.join(differing[:5])}")
        misshaped = [k for k in first if state[k].shape != first[k].shape]
        if misshaped:
            raise CheckpointError(f"{name} and {names[0]} differ in shape at {', '.join(misshaped[:5])}")
    total = sum(weights)
    averaged = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            mean = sum(w / total * state[key].double() for w, state in zip(weights, states))
            averaged[key] = mean.to(tensor.dtype)
        else:
            if not all(torch.equal(state[key], tensor) for state in states[1:]):
                raise CheckpointError(f"non-float tensor {key} differs between checkpoints; cannot average it")
            averaged[key] = tensor.clone()
    return averaged
