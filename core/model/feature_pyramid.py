"""Feature pyramid shared by motion estimation and synthesis."""
import torch.nn as nn

from .initialization import LEAKY_RELU_SLOPE, init_for


def conv_lrelu_stage(in_channels, out_channels, first_stride):
    """Four 3x3 convs with LeakyReLU(0.1); the first has the given stride."""
    layers = []
    for i in range(4):
        layers += [
            init_for(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3,
                               stride=first_stride if i == 0 else 1, padding=1), LEAKY_RELU_SLOPE),
            nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True),
        ]
    return nn.Sequential(*layers)


class FeaturePyramid(nn.Module):
    """Encodes one frame into features at 1, 1/2 and 1/4 of its resolution.

    Input N x 3 x H x W; output [N x C x H x W, N x 2C x H/2 x W/2, N x 4C x H/4 x W/4].
    """

    def __init__(self, channels):
        super().__init__()
        self.conv_stage0 = conv_lrelu_stage(3, channels, 1)
        self.conv_stage1 = conv_lrelu_stage(channels, 2 * channels, 2)
        self.conv_stage2 = conv_lrelu_stage(2 * channels, 4 * channels, 2)

    def forward(self, img):
        feat0 = self.conv_stage0(img)
        feat1 = self.conv_stage1(feat0)
        feat2 = self.conv_stage2(feat1)
        return [feat0, feat1, feat2]
