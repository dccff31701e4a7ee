"""Recurrent frame synthesis network, run once per pyramid level at the level's full resolution."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import splat


def conv_prelu(in_channels, out_channels, stride=1):
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.PReLU(out_channels)]


def deconv_prelu(in_channels, out_channels):
    return [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), nn.PReLU(out_channels)]


def flow_pyramid(flow):
    """Full-resolution flow N x 2k x H x W (pixels) -> [full, 1/2, 1/4], each level's values in its own pixels."""
    half = F.interpolate(flow, scale_factor=0.5, mode="bilinear", align_corners=False) * 0.5
    quarter = F.interpolate(half, scale_factor=0.5, mode="bilinear", align_corners=False) * 0.5
    return [flow, half, quarter]


def upsample_flow(flow, factor):
    """Bilinear x``factor`` upsampling of a flow, values scaled by ``factor`` so they stay in output pixels."""
    return F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False) * factor


class SynthesisNetwork(nn.Module):
    """Forward-warps both frames and their feature pyramids to time t and refines the blend with a U-Net.

    The U-Net sees [previous interpolation, warped0, warped1, img0, img1, flow_0t, flow_1t] (19 channels),
    takes in the warped features of both frames at each encoder scale and at the bottleneck, and predicts
    a residual and two blending masks.
    """

    def __init__(self, feature_channels, channels):
        super().__init__()
        f, c = feature_channels, channels
        self.encoder_conv = nn.Sequential(*conv_prelu(19, c), *conv_prelu(c, c))
        self.encoder_down1 = nn.Sequential(*conv_prelu(c + 2 * f, 2 * c, stride=2),
                                           *conv_prelu(2 * c, 2 * c), *conv_prelu(2 * c, 2 * c))
        self.encoder_down2 = nn.Sequential(*conv_prelu(2 * c + 4 * f, 4 * c, stride=2),
                                           *conv_prelu(4 * c, 4 * c), *conv_prelu(4 * c, 4 * c))
        self.decoder_up1 = nn.Sequential(*deconv_prelu(4 * c + 8 * f, 2 * c), *conv_prelu(2 * c, 2 * c))
        self.decoder_up2 = nn.Sequential(*deconv_prelu(4 * c, c), *conv_prelu(c, c))
        self.decoder_conv = nn.Sequential(*conv_prelu(2 * c, c), *conv_prelu(c, c))
        self.pred = nn.Conv2d(c, 5, 3, padding=1)

    def warp(self, img0, img1, feats0, feats1, bi_flow, time_period):
        """Forward-warp frames and features to time t.

        bi_flow: N x 4 x H x W at the level's full resolution (pixels); t: float or N x 1 x 1 x 1 tensor.
        Returns (warped_img0, warped_img1, warped_feats0, warped_feats1, flow_0t, flow_1t).
        """
        flows = flow_pyramid(bi_flow)
        flow_0t = bi_flow[:, 0:2] * time_period
        flow_1t = bi_flow[:, 2:4] * (1 - time_period)
        warped0, warped1 = [], []
        for level, (flow, feat0, feat1) in enumerate(zip(flows, feats0, feats1)):
            f0t, f1t = (flow_0t, flow_1t) if level == 0 else (flow[:, 0:2] * time_period,
                                                                 flow[:, 2:4] * (1 - time_period))
            if level == 0:  # splat the frame together with its full-resolution features
                feat0, feat1 = torch.cat([img0, feat0], 1), torch.cat([img1, feat1], 1)
            warped0.append(splat(feat0, f0t, mode="average"))
            warped1.append(splat(feat1, f1t, mode="average"))
        warped_img0, warped0[0] = warped0[0][:, :3], warped0[0][:, 3:]
        warped_img1, warped1[0] = warped1[0][:, :3], warped1[0][:, 3:]
        return warped_img0, warped_img1, warped0, warped1, flow_0t, flow_1t

    def forward(self, img0, img1, feats0, feats1, bi_flow, time_period, last_interp=None):
        """img0, img1: N x 3 x H x W; feats*: the frame's feature pyramid; bi_flow: N x 4 x H x W (pixels).

        ``last_interp`` (N x 3 x H x W) is the previous level's result upsampled; None at the coarsest level.
        Returns the interpolated frame N x 3 x H x W in [0, 1].
        """
        warped_img0, warped_img1, wfeats0, wfeats1, flow_0t, flow_1t = self.warp(
            img0, img1, feats0, feats1, bi_flow, time_period)
        if last_interp is None:
            last_interp = warped_img0 * (1 - time_period) + warped_img1 * time_period

        x = torch.cat([last_interp, warped_img0, warped_img1, img0, img1, flow_0t, flow_1t], 1)
        s0 = self.encoder_conv(x)
        s1 = self.encoder_down1(torch.cat([s0, wfeats0[0], wfeats1[0]], 1))
        s2 = self.encoder_down2(torch.cat([s1, wfeats0[1], wfeats1[1]], 1))
        x = self.decoder_up1(torch.cat([s2, wfeats0[2], wfeats1[2]], 1))
        x = self.decoder_up2(torch.cat([x, s1], 1))
        x = self.decoder_conv(torch.cat([x, s0], 1))
        x = self.pred(x)

        residual = torch.sigmoid(x[:, 0:3]) * 2 - 1
        mask0 = torch.sigmoid(x[:, 3:4]) * (1 - time_period)
        mask1 = torch.sigmoid(x[:, 4:5]) * time_period
        blend = (warped_img0 * mask0 + warped_img1 * mask1) / (mask0 + mask1)
        return torch.clamp(blend + residual, 0, 1)
