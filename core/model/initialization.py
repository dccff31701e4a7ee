"""Weight initialisation for training from scratch, declared per layer.

Every convolution states at construction what follows it, with :func:`init_for`: the slope of its activation
(LeakyReLU 0.1, or PReLU's initial 0.25) or :data:`OUTPUT` for an output layer. :func:`initialize_weights` reads
that declaration; a convolution without one is an error, so a new layer type cannot silently get another
initialisation. Loading weights replaces all of this.
"""
import torch.nn as nn

LEAKY_RELU_SLOPE = 0.1
PRELU_INITIAL_SLOPE = 0.25
OUTPUT = "output"
"""Declared by the two output convolutions (flow, and residual/masks): they start near zero, N(0, 1e-3), so a new
model begins by blending the frames with zero flow."""
OUTPUT_STD = 1e-3


def init_for(conv, follows):
    """Declare the initialisation of ``conv``: ``follows`` is the slope of the activation after it, or
    :data:`OUTPUT`. Returns ``conv``."""
    if follows != OUTPUT and not 0 <= follows < 1:
        raise ValueError(f"init_for: an activation slope in [0, 1) or OUTPUT, got {follows!r}")
    conv.init_follows = follows
    return conv


def he_std(conv, slope):
    """Standard deviation of He-normal weights for ``conv`` followed by a leaky activation of ``slope``. A
    transposed convolution's fan-in counts the inputs that reach one output pixel."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    if isinstance(conv, nn.ConvTranspose2d):
        fan_in = conv.in_channels * k // (conv.stride[0] * conv.stride[1])
    else:
        fan_in = conv.in_channels * k // conv.groups
    return (2.0 / ((1 + slope ** 2) * fan_in)) ** 0.5


def initialize_weights(model):
    """Variance-preserving (He) initialisation of every convolution of ``model`` by its declaration
    (:func:`init_for`), zero biases, and zero-mean filters in the feature pyramid (``model.feat_pyramid``).

    PyTorch's default conv initialisation shrinks activations by about sqrt(3) per layer, so after the feature
    pyramid the correlation volume is nearly flat and the motion estimator barely learns on a small budget.
    Zero-mean feature filters respond to texture rather than brightness, so even untrained features correlate
    best at the true displacement, and the motion estimator has an informative cost volume from the first step.
    """
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        follows = getattr(module, "init_follows", None)
        if follows is None:
            raise ValueError(f"initialize_weights: convolution {name} declares no initialisation (see "
                             f"core.model.initialization.init_for)")
        std = OUTPUT_STD if follows == OUTPUT else he_std(module, follows)
        nn.init.normal_(module.weight, 0.0, std)
        nn.init.zeros_(module.bias)
    for module in model.feat_pyramid.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight.data
            std = weight.std()
            weight -= weight.mean(dim=(1, 2, 3), keepdim=True)
            weight *= std / weight.std()
