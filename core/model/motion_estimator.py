"""Recurrent bi-directional motion estimator, run once per pyramid level at 1/4 of the level's resolution."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import correlation, splat
from .initialization import LEAKY_RELU_SLOPE, OUTPUT, init_for


def conv_lrelu(in_channels, out_channels, kernel_size):
    return nn.Sequential(init_for(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
                                  LEAKY_RELU_SLOPE),
                         nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True))


class MotionEstimator(nn.Module):
    """Estimates the bi-directional flow between two frames from their 1/4-resolution features.

    Both feature maps are first forward-warped half-way toward each other with the previous flow, so the
    cost volume only needs to resolve the remaining motion; the network then outputs the full flow (not a
    residual). Flows are N x 4 x h x w at 1/4 of the level's resolution, in pixels of the level's *full*
    resolution: channels 0:2 flow from frame 0 to frame 1, channels 2:4 from frame 1 to frame 0.
    """

    def __init__(self, feature_channels, widths, max_displacement=4):
        super().__init__()
        cost_channels = (2 * max_displacement + 1) ** 2
        hidden = widths[-1]
        in_channels = cost_channels + 2 * feature_channels + hidden + 4
        self.max_displacement = max_displacement
        self.conv_layer1 = conv_lrelu(in_channels, widths[0], 1)
        self.conv_layer2 = conv_lrelu(widths[0], widths[1], 3)
        self.conv_layer3 = conv_lrelu(widths[1], widths[2], 3)
        self.conv_layer4 = conv_lrelu(widths[2], widths[3], 3)
        self.conv_layer5 = conv_lrelu(widths[3], widths[4], 3)
        self.conv_layer6 = nn.Sequential(init_for(nn.Conv2d(widths[4], 4, 3, padding=1), OUTPUT))

    def forward(self, feat0, feat1, last_flow, last_hidden):
        """feat0, feat1: N x C x h x w; last_flow: N x 4 x h x w; last_hidden: N x hidden x h x w.

        Returns (flow N x 4 x h x w, hidden N x hidden x h x w).
        """
        # Flow is in full-resolution pixels: x0.25 to reach this resolution, x0.5 to go half-way.
        half_flow = last_flow * 0.125
        warped0 = splat(feat0, half_flow[:, 0:2], mode="average")
        warped1 = splat(feat1, half_flow[:, 2:4], mode="average")
        cost = F.leaky_relu(correlation(warped0, warped1, self.max_displacement), 0.1)
        x = torch.cat([cost, warped0, warped1, last_hidden, last_flow], 1)
        x = self.conv_layer1(x)
        x = self.conv_layer2(x)
        x = self.conv_layer3(x)
        x = self.conv_layer4(x)
        hidden = self.conv_layer5(x)
        flow = self.conv_layer6(hidden)
        return flow, hidden
