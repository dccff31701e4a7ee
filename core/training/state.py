"""The full training state in one file (``checkpoints/last.pt``): what ``--resume`` needs to continue exactly."""
import os
import random

import torch

from ..checkpoint import MODEL_OPTIONS_KEY, atomic_save, model_record, strip_prefix


def save_training_state(path, trainer, step, best_psnr, args):
    """Write (atomically) the model, optimizer, fp16 scaler and weight-average states of ``trainer`` (a
    :class:`~core.training.step.TrainingStep`), the step, the best validation PSNR, the options and the torch and
    Python RNG states; the model's options are recorded as in weights files."""
    state = {"model": strip_prefix(dict(trainer.model.state_dict())), "optimizer": trainer.optimizer.state_dict(),
             "step": step, "best_psnr": best_psnr, "args": vars(args), "torch_rng": torch.get_rng_state(),
             "python_rng": random.getstate(), "scaler": trainer.scaler.state_dict(),
             "ema": trainer.ema.state_dict() if trainer.ema is not None else {},
             MODEL_OPTIONS_KEY: model_record(trainer.model)}
    atomic_save(lambda tmp: torch.save(state, tmp), path)


def restore_training_state(path, trainer):
    """Load what :func:`save_training_state` wrote into ``trainer`` and the RNGs; returns (step, best_psnr).
    A missing file is a one-line error."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: --resume but no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    if trainer.ema is not None and state.get("ema"):
        trainer.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return state["step"], state["best_psnr"]


def compact_training_state(source, target):
    """Copy the training state ``source`` to ``target`` (atomically) with the optimizer's moments in bfloat16:
    base without a weight average 13 MB instead of 20 MB, for carrying between machines under a per-file limit.
    ``--resume`` from it continues with the moments rounded to bfloat16 (the optimizer casts them back to float32
    on loading); weights (and a weight average) stay exact. Returns the target's size in bytes."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    for per_parameter in state["optimizer"]["state"].values():
        for key, value in per_parameter.items():
            if torch.is_tensor(value) and value.is_floating_point() and value.dim() > 0:
                per_parameter[key] = value.to(torch.bfloat16)
    atomic_save(lambda tmp: torch.save(state, tmp), target)
    return os.path.getsize(target)
