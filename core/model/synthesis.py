"""Recurrent frame synthesis network, run once per pyramid level at the level's full resolution."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import Splatting
from .initialization import OUTPUT, PRELU_INITIAL_SLOPE, init_for


STRIP_MARGIN = 32
"""Rows of context above and below a synthesis strip. The U-Net's receptive field reaches 29 pixels: 2 (full-res
convs) + 1 + 4 (down to 1/2) + 2 + 8 (down to 1/4) + 4 + 2 (up to 1/2) + 2 + 1 (up to full) + 3 (last convs);
32 covers it and keeps strips aligned to the 1/4 grid."""


def conv_prelu(in_channels, out_channels, stride=1):
    return [init_for(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), PRELU_INITIAL_SLOPE),
            nn.PReLU(out_channels, init=PRELU_INITIAL_SLOPE)]


def deconv_prelu(in_channels, out_channels):
    return [init_for(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), PRELU_INITIAL_SLOPE),
            nn.PReLU(out_channels, init=PRELU_INITIAL_SLOPE)]


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
        self.pred = init_for(nn.Conv2d(c, 5, 3, padding=1), OUTPUT)

    def forward(self, img0, img1, feats0, feats1, bi_flow, time_period, last_interp=None, strip_rows=None):
        """img0, img1: N x 3 x H x W; feats*: the frame's feature pyramid; bi_flow: N x 4 x H x W (pixels).

        ``last_interp`` (N x 3 x H x W) is the previous level's result upsampled; None at the coarsest level.
        ``strip_rows``: synthesize in horizontal strips of this many rows (a multiple of 4) to bound memory;
        each strip is computed with :data:`STRIP_MARGIN` extra rows above and below, more than the U-Net's
        receptive field, so the result equals the whole-frame result (up to float rounding).
        Returns the interpolated frame N x 3 x H x W in [0, 1].
        """
        height = img0.shape[-2]
        flows = flow_pyramid(bi_flow)
        flows_0t = [flow[:, 0:2] * time_period for flow in flows]
        flows_1t = [flow[:, 2:4] * (1 - time_period) for flow in flows]
        warps = [(Splatting(f0t), Splatting(f1t)) for f0t, f1t in zip(flows_0t, flows_1t)]
        inputs = (img0, img1, feats0, feats1, flows_0t[0], flows_1t[0], warps, time_period, last_interp)
        if strip_rows is None or strip_rows >= height:
            return self._synthesize_rows(*inputs, 0, height)
        if strip_rows % 4:
            raise ValueError(f"strip_rows must be a multiple of 4, got {strip_rows}")
        return torch.cat([self._synthesize_rows(*inputs, y0, min(height, y0 + strip_rows))
                          for y0 in range(0, height, strip_rows)], 2)

    def _synthesize_rows(self, img0, img1, feats0, feats1, flow_0t, flow_1t, warps, time_period, last_interp,
                         y0, y1):
        """Output rows y0 .. y1-1, computed from rows [y0 - margin, y1 + margin) of the warped inputs."""
        height = img0.shape[-2]
        top = 0 if y0 == 0 else max(0, y0 - STRIP_MARGIN)
        bottom = height if y1 == height else min(height, y1 + STRIP_MARGIN)
        rows = lambda scale: (top >> scale, bottom >> scale)
        crop = lambda t: t[..., top:bottom, :]

        (splat0, splat1) = warps[0]
        warped_img0, warped_img1 = splat0.average(img0, rows(0)), splat1.average(img1, rows(0))
        wfeats0 = [w0.average(f, rows(k)) for k, ((w0, _), f) in enumerate(zip(warps, feats0))]
        wfeats1 = [w1.average(f, rows(k)) for k, ((_, w1), f) in enumerate(zip(warps, feats1))]
        if last_interp is None:
            last_interp = warped_img0 * (1 - time_period) + warped_img1 * time_period
        else:
            last_interp = crop(last_interp)

        x = torch.cat([last_interp, warped_img0, warped_img1, crop(img0), crop(img1), crop(flow_0t),
                       crop(flow_1t)], 1)
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
        out = torch.clamp(blend + residual, 0, 1)
        return out[..., y0 - top:y1 - top, :]
