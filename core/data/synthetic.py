"""Synthetic motion triplets with exact flow: textured layers moving with random affine motion.

Each sample is a background layer and 1-3 foreground layers (textures cut out by random ellipses or polygons),
each moving with its own affine motion (translation, rotation, scaling, interpolated linearly in time), so
layers occlude and disocclude each other. Frames are rendered at times 0, t and 1; the exact bi-directional
flow between frames 0 and 1 comes from the motion of the layer visible at each pixel.

Textures are still photos that ship with scikit-image (``skimage.data``), plus any frames passed in.
"""
import cv2
import numpy as np
import torch

from ..frames import image_to_tensor


SKIMAGE_TEXTURES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel",
                    "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "page", "text")


def skimage_textures():
    """Sample photos from scikit-image as H x W x 3 uint8 RGB arrays."""
    import skimage.data
    textures = []
    for name in SKIMAGE_TEXTURES:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        textures.append(np.ascontiguousarray(image[:, :, :3]).astype(np.uint8))
    return textures


def _affine(scale, angle, center, position):
    """2 x 3 matrix mapping layer coordinates u to image coordinates: scale * R(angle) (u - center) + position."""
    c, s = np.cos(angle), np.sin(angle)
    a = scale * np.array([[c, -s], [s, c]])
    return np.hstack([a, (position - a @ center)[:, None]])


def _compose_flow(m_from, m_to, grid):
    """Flow (H x W x 2) of image points under layer motion from matrix m_from to m_to."""
    a_from, b_from = m_from[:, :2], m_from[:, 2]
    g = m_to[:, :2] @ np.linalg.inv(a_from)
    offset = m_to[:, 2] - g @ b_from
    moved = grid @ g.T + offset
    return (moved - grid).astype(np.float32)


class SyntheticMotion(torch.utils.data.Dataset):
    """Layered affine-motion triplets of ``size`` = (h, w) with exact flow; ``length`` virtual samples.

    max_translation: largest displacement between frames 0 and 1, in pixels (background gets half);
    min_translation: 0 draws each layer's translation uniformly from the square [-max, max]^2 (small motions are
        rare: |motion| < max / 5 in ~3% of layers); > 0 draws its length log-uniformly from [min, max] pixels in
        a uniform direction, so occlusions at small displacements are as common as at large ones;
    log_uniform_fraction: with min_translation > 0, the probability that a layer draws its translation
        log-uniformly (else uniformly from the square): 1 favours small motion, 0.5 mixes both;
    static_fraction: the probability that a layer does not move at all (no translation, rotation or zoom), drawn
        per layer: a static background with moving objects (a camera on a tripod), static objects on a moving
        background, and now and then a fully static triplet (img0 == gt == img1, flow 0), which teaches the
        synthesis to leave unmoving pixels exactly as they are; 0 (default) draws no extra random numbers, so
        earlier sample streams are reproduced;
    middle_time: "random" (t uniform in [0.1, 0.9]) or a float.
    """

    def __init__(self, length, size=(256, 256), textures=None, max_translation=48.0, min_translation=0.0,
                 log_uniform_fraction=1.0, static_fraction=0.0, middle_time="random", seed=0):
        if not 0 <= min_translation <= max_translation:
            raise ValueError(f"need 0 <= min_translation <= max_translation, got {min_translation} and "
                             f"{max_translation}")
        if not 0 <= log_uniform_fraction <= 1:
            raise ValueError(f"log_uniform_fraction must be in [0, 1], got {log_uniform_fraction}")
        if not 0 <= static_fraction <= 1:
            raise ValueError(f"static_fraction must be in [0, 1], got {static_fraction}")
        self.length = length
        self.size = size
        self.textures = textures if textures is not None else skimage_textures()
        self.max_translation = max_translation
        self.min_translation = min_translation
        self.log_uniform_fraction = log_uniform_fraction
        self.static_fraction = static_fraction
        self.middle_time = middle_time
        self.seed = seed
        h, w = size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        self.grid = np.stack([xs, ys], -1)

    def __len__(self):
        return self.length

    def _texture_patch(self, rng, h, w):
        texture = self.textures[int(rng.integers(len(self.textures)))]
        zoom = rng.uniform(0.6, 1.6)
        th, tw = texture.shape[:2]
        need_h, need_w = int(np.ceil(h / zoom)) + 2, int(np.ceil(w / zoom)) + 2
        if th < need_h or tw < need_w:   # small texture: scale it up to fit
            factor = max(need_h / th, need_w / tw)
            texture = cv2.resize(texture, (int(np.ceil(tw * factor)), int(np.ceil(th * factor))))
            th, tw = texture.shape[:2]
        y, x = int(rng.integers(0, th - need_h + 1)), int(rng.integers(0, tw - need_w + 1))
        patch = cv2.resize(texture[y:y + need_h, x:x + need_w], (w, h), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch)

    def _mask(self, rng, h, w):
        mask = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            axes = (int(w * rng.uniform(0.3, 0.5)), int(h * rng.uniform(0.3, 0.5)))
            cv2.ellipse(mask, (w // 2, h // 2), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(0.25, 0.5, n)
            points = np.stack([w / 2 + radii * w * np.cos(angles), h / 2 + radii * h * np.sin(angles)], 1)
            cv2.fillPoly(mask, [points.astype(np.int32)], 255)
        return mask

    def _translation(self, rng, largest):
        """A layer's displacement between frames 0 and 1 (2-vector, pixels), at most ``largest`` per axis."""
        log_uniform = self.min_translation > 0 and self.log_uniform_fraction > 0
        if log_uniform and self.log_uniform_fraction < 1:
            log_uniform = rng.random() < self.log_uniform_fraction
        if not log_uniform:
            return rng.uniform(-1, 1, 2) * largest
        scale = largest / self.max_translation
        length = np.exp(rng.uniform(np.log(self.min_translation), np.log(self.max_translation))) * scale
        angle = rng.uniform(0, 2 * np.pi)
        return length * np.array([np.cos(angle), np.sin(angle)])

    def _layers(self, rng):
        """Random layers: (texture, mask or None, centre, position at time 0, translation, rotation, zoom)."""
        h, w = self.size
        layers = []
        # background: larger than the frame so it covers it throughout its (smaller) motion
        margin = int(self.max_translation) + 16
        bh, bw = h + 2 * margin, w + 2 * margin
        motion = self._translation(rng, 0.5 * self.max_translation)
        layers.append(self._maybe_static(rng, (self._texture_patch(rng, bh, bw), None, np.array([bw / 2, bh / 2]),
                                               np.array([w / 2, h / 2]), motion,
                                               rng.uniform(-0.03, 0.03), rng.uniform(-0.04, 0.04))))
        for _ in range(int(rng.integers(1, 4))):
            lh, lw = int(h * rng.uniform(0.25, 0.7)), int(w * rng.uniform(0.25, 0.7))
            motion = self._translation(rng, self.max_translation)
            middle = rng.uniform([0, 0], [w, h])
            layers.append(self._maybe_static(rng, (self._texture_patch(rng, lh, lw), self._mask(rng, lh, lw),
                                                   np.array([lw / 2, lh / 2]), middle, motion,
                                                   rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1))))
        return layers

    def _maybe_static(self, rng, layer):
        """The layer, its start shifted back by half its motion (centred on its mid-time position), or held still
        with probability ``static_fraction``."""
        texture, mask, center, middle, motion, rotation, zoom = layer
        if self.static_fraction > 0 and rng.random() < self.static_fraction:
            return texture, mask, center, middle, np.zeros(2), 0.0, 0.0
        return texture, mask, center, middle - motion / 2, motion, rotation, zoom

    @staticmethod
    def _matrix(layer, time):
        _, _, center, start, motion, rotation, zoom = layer
        return _affine(1 + zoom * time, rotation * time, center, start + motion * time)

    def _render(self, layers, time):
        """Frame at ``time`` (H x W x 3 uint8) and, per pixel, the index of the visible layer."""
        h, w = self.size
        frame = np.zeros((h, w, 3), np.float32)
        visible = np.zeros((h, w), np.int64)
        for index, layer in enumerate(layers):
            matrix = self._matrix(layer, time)
            texture, mask = layer[0], layer[1]
            warped = cv2.warpAffine(texture, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT).astype(np.float32)
            if mask is None:
                frame[:] = warped
                continue
            alpha = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
            frame = frame * (1 - alpha[..., None]) + warped * alpha[..., None]
            visible[alpha >= 0.5] = index
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8), visible

    def _flow(self, layers, visible, time_from, time_to):
        flow = np.zeros((*self.size, 2), np.float32)
        for index, layer in enumerate(layers):
            selected = visible == index
            if selected.any():
                layer_flow = _compose_flow(self._matrix(layer, time_from), self._matrix(layer, time_to),
                                           self.grid[selected])
                flow[selected] = layer_flow
        return flow

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index, 7])
        layers = self._layers(rng)
        t = float(rng.uniform(0.1, 0.9)) if self.middle_time == "random" else float(self.middle_time)
        img0, visible0 = self._render(layers, 0.0)
        gt, _ = self._render(layers, t)
        img1, visible1 = self._render(layers, 1.0)
        flow = np.concatenate([self._flow(layers, visible0, 0.0, 1.0), self._flow(layers, visible1, 1.0, 0.0)], 2)
        return {"img0": image_to_tensor(img0)[0], "img1": image_to_tensor(img1)[0], "gt": image_to_tensor(gt)[0],
                "time": torch.tensor(t, dtype=torch.float32),
                "flow": torch.from_numpy(flow).permute(2, 0, 1).contiguous(),
                "flow_valid": torch.ones(2, *self.size), "skipped": torch.tensor(0)}
