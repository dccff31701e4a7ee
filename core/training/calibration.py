"""Data-dependent initialisation before training from scratch."""
import torch
import torch.nn as nn


@torch.no_grad()
def calibrate_feature_scale(model, images, target_std=1.0):
    """Data-dependent rescaling of the feature-pyramid filters (layer-sequential unit variance).

    Scales each feature convolution in turn so its output has standard deviation ``target_std`` on ``images``
    (N x 3 x H x W in [0, 1], a few natural frames). With unit-scale features the correlation volume (a channel
    mean of products) has unit scale too, instead of ~0.001 after a variance-preserving init, and the motion
    estimator can read it from the first training step. Call once before training from scratch.
    """
    for module in model.feat_pyramid.modules():
        if isinstance(module, nn.Conv2d):
            outputs = []
            handle = module.register_forward_hook(lambda _module, _input, output: outputs.append(output.std()))
            model.feat_pyramid(images)
            handle.remove()
            module.weight.data *= target_std / outputs[0].clamp_min(1e-8)
