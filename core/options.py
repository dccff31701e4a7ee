"""Model sizes and the knobs that shape UPR-Net.

The three official sizes differ only in widths; everything else (depths, kernel sizes, the 81-channel
cost volume, the 4-channel bi-directional flow) is shared. Widths are read off the official state dicts
(see ``tests/fixtures/upr_*_keys.tsv``).

How to size a new variant: ``feature_channels`` sets the feature pyramid (C, 2C, 4C at 1, 1/2, 1/4
resolution) and with it the warped features the other two networks consume; ``motion_channels`` are the
five hidden widths of the motion estimator (the last is also its recurrent hidden state);
``synthesis_channels`` is the U-Net's base width (C, 2C, 4C per scale). Cost grows roughly with the
square of the widths, so ``large`` (x1.5) is ~2x and ``LARGE`` (x2) ~4x the base FLOPs.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelOptions:
    feature_channels: int = 16
    """Channels of feature-pyramid stage 0 (full resolution); stages 1 and 2 have 2x and 4x."""
    motion_channels: tuple = (160, 128, 112, 96, 64)
    """Widths of the motion estimator's 1x1 conv and four 3x3 convs; the last is the hidden state."""
    synthesis_channels: int = 32
    """Base width of the synthesis U-Net (encoder scales have 1x, 2x, 4x)."""
    max_displacement: int = 4
    """Correlation search radius at 1/4 resolution: (2d+1)^2 cost channels."""

    @property
    def hidden_channels(self):
        return self.motion_channels[-1]


MODEL_SIZES = {
    "base": ModelOptions(16, (160, 128, 112, 96, 64), 32),
    "large": ModelOptions(24, (240, 192, 168, 144, 96), 48),
    "LARGE": ModelOptions(32, (320, 256, 224, 192, 128), 64),
}
"""Official sizes: base 1,653,961 parameters, large 3,701,865, LARGE 6,563,721."""


def model_options(model_size):
    try:
        return MODEL_SIZES[model_size]
    except KeyError:
        raise ValueError(f"unknown model size {model_size!r}; choose one of {sorted(MODEL_SIZES)}") from None
