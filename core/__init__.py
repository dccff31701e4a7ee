"""UPR-Net for video frame interpolation: model, ops, data, losses, metrics and checkpoint I/O.

Public API::

    model = core.build_model("base")                   # or "large", "LARGE"
    core.load_weights(model, "upr-base.pkl")           # official checkpoints load unchanged
    model = core.load_model("run/checkpoints/best.pkl")  # built with the options the file records
    interp, bi_flow, extra = model(img0, img1, 0.5)    # N x 3 x H x W in [0, 1]

    interpolator = core.Interpolator.from_checkpoint("checkpoints/upr-base.pkl")
    frames = interpolator.interpolate(frame0, frame1, [0.25, 0.5, 0.75])   # any size, uint8/float
"""
from .checkpoint import CheckpointError, average_weights, load_model, load_weights, save_weights
from .interpolator import Interpolator, InputError, choose_pyramid
from .model import UPRNet
from .options import MODEL_SIZES, model_options

__version__ = "0.1.0"


def build_model(model_size="base", pyr_level=3, nr_lvl_skipped=0):
    """An untrained UPR-Net of the given size ("base", "large" or "LARGE")."""
    return UPRNet(model_size, pyr_level, nr_lvl_skipped)


__all__ = ["build_model", "load_model", "load_weights", "save_weights", "average_weights", "CheckpointError",
           "UPRNet", "Interpolator", "InputError", "choose_pyramid", "MODEL_SIZES", "model_options"]
