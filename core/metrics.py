"""Image quality metrics as the frame-interpolation literature reports them.

PSNR: -10 log10(MSE) per image on [0, 1] RGB, capped at 100 dB (a perfect prediction), then averaged.
SSIM: Wang et al. with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per channel on
the 'valid' region (no padding) and averaged: the MATLAB-style SSIM; it equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.
"""
import cv2
import numpy as np
import torch

PSNR_CAP = 100.0


def psnr(prediction, target):
    """prediction, target: N x C x H x W in [0, 1]. Returns N PSNR values in dB (capped at 100)."""
    mse = (prediction.double() - target.double()).pow(2).flatten(1).mean(1)
    return (-10 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP / 10)))).float()


def _gaussian_kernel(size=11, sigma=1.5, dtype=torch.float64, device=None):
    """The normalised 1-D Gaussian; the 2-D window is its outer product (so filtering is separable)."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(prediction, target, window_size=11, sigma=1.5):
    """prediction, target: N x C x H x W in [0, 1] (H, W >= 11, any device). Returns N SSIM values.

    Computed on the CPU in float64 with OpenCV's separable filter; the border of window_size // 2 pixels,
    where the window leaves the image, is excluded (the 'valid' region).
    """
    x = prediction.detach().double().cpu().numpy()
    y = target.detach().double().cpu().numpy()
    n, c, h, w = x.shape
    if min(h, w) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size}x{window_size}, got {h}x{w}")
    g = _gaussian_kernel(window_size, sigma).numpy()
    r = window_size // 2
    blur = lambda z: cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[r:h - r, r:w - r]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = np.zeros(n)
    for i in range(n):
        for channel in range(c):
            a, b = x[i, channel], y[i, channel]
            mu_a, mu_b = blur(a), blur(b)
            var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
            ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
            values[i] += ssim_map.mean() / c
    return torch.from_numpy(values).float()


def quantize_8bit(image):
    """Round a [0, 1] image to the nearest of the 256 levels an 8-bit PNG would store."""
    return torch.round(image.clamp(0, 1) * 255) / 255
