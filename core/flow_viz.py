"""Colour-coding of optical flow with the standard (Middlebury / Baker et al.) colour wheel."""
import numpy as np
import torch
from torchvision.utils import flow_to_image


def flow_to_color(flow):
    """flow: 2 x H x W tensor or H x W x 2 array (pixels, x first) -> H x W x 3 uint8 RGB.

    Hue encodes direction, saturation the magnitude relative to the largest magnitude in the flow.
    """
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(flow).permute(2, 0, 1)
    return flow_to_image(flow.detach().float().cpu()).permute(1, 2, 0).numpy()
