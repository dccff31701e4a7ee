"""UPR-Net: a unified pyramid recurrent network for video frame interpolation (Jin et al., CVPR 2023).

The same three networks run at every level of an image pyramid, coarse to fine:

    for level l = L-1 .. 0 (frames bilinearly downsampled by 2^l):
        feats0, feats1 = feature_pyramid(img0_l), feature_pyramid(img1_l)        # 1, 1/2, 1/4
        flow, hidden = motion_estimator(feats0[2], feats1[2], up(flow), up(hidden))  # at 1/4
        interp = synthesis_network(img0_l, img1_l, feats0, feats1, up4(flow), t, up(interp))

Motion does not depend on t, so :meth:`UPRNet.estimate_motion` runs once and :meth:`UPRNet.synthesize`
can be called for any number of time steps. With ``nr_lvl_skipped`` S > 0 (for 4K input) motion is only
estimated down to level S; level 0 then reuses that flow and interpolation, upsampled by 2^S, and only
synthesizes; levels S-1 .. 1 are not visited.
"""
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..device import apply_allocator_policy
from ..options import model_options
from .feature_pyramid import FeaturePyramid
from .initialization import initialize_weights
from .motion_estimator import MotionEstimator
from .synthesis import SynthesisNetwork, upsample_flow


@dataclass
class LevelMotion:
    """What one pyramid level hands to synthesis: its frames, both feature pyramids and its flow.

    flow: N x 4 x h x w at 1/4 of the level's resolution, in pixels of the level's full resolution.
    """
    img0: torch.Tensor
    img1: torch.Tensor
    feats0: list
    feats1: list
    flow: torch.Tensor

    _full_flow: torch.Tensor = field(default=None, init=False, repr=False, compare=False)

    @property
    def full_flow(self):
        """The flow upsampled x4 to the level's full resolution (values unchanged): N x 4 x H x W. Computed once
        (a plain attribute cache: functools.cached_property takes a lock on Python 3.11, which torch.compile
        cannot trace)."""
        if self._full_flow is None:
            self._full_flow = F.interpolate(self.flow, scale_factor=4, mode="bilinear", align_corners=False)
        return self._full_flow


def downsample_image(img, level):
    if level == 0:
        return img
    return F.interpolate(img, scale_factor=0.5 ** level, mode="bilinear", align_corners=False)


def upsample_image(img, factor):
    return F.interpolate(img, scale_factor=factor, mode="bilinear", align_corners=False)


def as_time_tensor(time_period, like):
    """A float or a per-sample tensor of t -> something that broadcasts against N x C x H x W."""
    if isinstance(time_period, torch.Tensor):
        return time_period.to(like.dtype).reshape(-1, 1, 1, 1)
    return float(time_period)


def check_frame_sizes(img0, img1, pyr_level):
    """A ValueError unless img0 and img1 are N x C x H x W of one shape with H and W multiples of 2^(pyr_level + 1)
    (the coarsest level is downsampled 2^(pyr_level - 1) times and its features another 4 times)."""
    if img0.dim() != 4 or img0.shape != img1.shape:
        raise ValueError(f"UPR-Net needs two N x 3 x H x W frames of one shape, got {tuple(img0.shape)} and "
                         f"{tuple(img1.shape)}")
    height, width = img0.shape[-2:]
    multiple = 2 ** (pyr_level + 1)
    if height % multiple or width % multiple:
        raise ValueError(f"UPR-Net with pyr_level={pyr_level} needs frame height and width that are multiples of "
                         f"2^(pyr_level + 1) = {multiple}, got {height}x{width} (H x W); pad the frames (e.g. "
                         f"core.frames.pad_to_multiple) or use core.Interpolator, which pads any size and "
                         f"crops back")


class UPRNet(nn.Module):
    """UPR-Net of a given size. ``options`` overrides the widths of ``model_size`` for custom variants."""

    def __init__(self, model_size="base", pyr_level=3, nr_lvl_skipped=0, options=None):
        super().__init__()
        self.model_size = model_size
        self.options = options = options or model_options(model_size)
        self.pyr_level = pyr_level
        self.nr_lvl_skipped = nr_lvl_skipped
        self.feat_pyramid = FeaturePyramid(options.feature_channels)
        self.motion_estimator = MotionEstimator(4 * options.feature_channels, options.motion_channels,
                                                options.max_displacement)
        self.synthesis_network = SynthesisNetwork(options.feature_channels, options.synthesis_channels)
        self.input_memory_format = None
        """Memory format that :meth:`estimate_motion` converts its inputs to (None: leave them as they come); set
        by :meth:`prepare_for_inference`."""
        initialize_weights(self)

    def prepare_for_inference(self, max_frame_pixels=None):
        """An entry point's set-up for direct calls, as :class:`core.Interpolator` does it: eval mode and, for CPU
        weights, channels_last weights and inputs (converted on entry to :meth:`estimate_motion`) and glibc's malloc
        keeping freed memory (:func:`core.device.apply_allocator_policy`: process-wide, applied here once, and only
        when ``max_frame_pixels``, the largest padded frame to be run, is None or at most 720p). Results agree with
        the default layout to float rounding; speed-ups in docs/performance.md. Returns the model::

            model = core.load_weights(core.build_model("base"), "upr-base.pkl").prepare_for_inference()
        """
        self.eval()
        if next(self.parameters()).device.type == "cpu":
            self.to(memory_format=torch.channels_last)
            self.input_memory_format = torch.channels_last
            apply_allocator_policy("cpu", max_frame_pixels)
        return self

    def _levels(self, pyr_level, nr_lvl_skipped):
        pyr_level = self.pyr_level if pyr_level is None else pyr_level
        nr_lvl_skipped = self.nr_lvl_skipped if nr_lvl_skipped is None else nr_lvl_skipped
        if pyr_level < 1 or not 0 <= nr_lvl_skipped < pyr_level:
            raise ValueError(f"need pyr_level >= 1 and 0 <= nr_lvl_skipped < pyr_level, "
                             f"got {pyr_level} and {nr_lvl_skipped}")
        return pyr_level, nr_lvl_skipped

    def estimate_motion(self, img0, img1, pyr_level=None, nr_lvl_skipped=None):
        """Run feature extraction and motion estimation over the pyramid.

        img0, img1: N x 3 x H x W in [0, 1], H and W divisible by 2^(pyr_level + 1) (else a ValueError; the
        Interpolator pads any size). Inputs are converted to :attr:`input_memory_format` when it is set.
        Returns a list of :class:`LevelMotion`, coarse to fine, one per level to synthesize.
        """
        pyr_level, nr_lvl_skipped = self._levels(pyr_level, nr_lvl_skipped)
        check_frame_sizes(img0, img1, pyr_level)
        if self.input_memory_format is not None:
            img0, img1 = (img.contiguous(memory_format=self.input_memory_format) for img in (img0, img1))
        levels = []
        flow = hidden = None
        for level in range(pyr_level - 1, nr_lvl_skipped - 1, -1):
            im0, im1 = downsample_image(img0, level), downsample_image(img1, level)
            feats0, feats1 = self.feat_pyramid(im0), self.feat_pyramid(im1)
            if flow is None:
                n, _, h, w = feats0[2].shape
                flow = feats0[2].new_zeros(n, 4, h, w)
                hidden = feats0[2].new_zeros(n, self.options.hidden_channels, h, w)
            else:
                flow, hidden = upsample_flow(flow, 2), upsample_flow(hidden, 2)
            flow, hidden = self.motion_estimator(feats0[2], feats1[2], flow, hidden)
            levels.append(LevelMotion(im0, im1, feats0, feats1, flow))
        if nr_lvl_skipped > 0:
            factor = 2 ** nr_lvl_skipped
            levels.append(LevelMotion(img0, img1, self.feat_pyramid(img0), self.feat_pyramid(img1),
                                      upsample_flow(flow, factor)))
        return levels

    def synthesize(self, levels, time_period=0.5, strip_rows=None):
        """Synthesize the frame at ``time_period`` from :meth:`estimate_motion`'s output.

        ``strip_rows``: bound memory by synthesizing large levels in exact horizontal strips (see
        :class:`SynthesisNetwork`). Returns (interp_img N x 3 x H x W, list of per-level interpolations,
        coarse to fine).
        """
        t = as_time_tensor(time_period, levels[0].img0)
        interp = None
        interp_imgs = []
        for motion in levels:
            if interp is not None:
                interp = upsample_image(interp, motion.img0.shape[-1] // interp.shape[-1])
            interp = self.synthesis_network(motion.img0, motion.img1, motion.feats0, motion.feats1,
                                            motion.full_flow, t, interp, strip_rows)
            interp_imgs.append(interp)
        return interp, interp_imgs

    def forward(self, img0, img1, time_period=0.5, pyr_level=None, nr_lvl_skipped=None):
        """img0, img1: N x 3 x H x W RGB in [0, 1]; time_period: float or N tensor in [0, 1].

        Returns (interp_img N x 3 x H x W, bi_flow N x 4 x H x W, {"interp_imgs": [...], "bi_flows": [...],
        "features": (feat0, feat1)}) with bi_flow in input pixels (0:2 frame 0 -> 1, 2:4 frame 1 -> 0), the
        per-level lists coarse to fine, each at its level's resolution, and the features of both input frames at
        1/4 of their resolution (what the finest motion estimate correlates; for a feature-matching loss).
        """
        levels = self.estimate_motion(img0, img1, pyr_level, nr_lvl_skipped)
        interp, interp_imgs = self.synthesize(levels, time_period)
        bi_flows = [motion.full_flow for motion in levels]
        features = (levels[-1].feats0[2], levels[-1].feats1[2])
        return interp, bi_flows[-1], {"interp_imgs": interp_imgs, "bi_flows": bi_flows, "features": features}
