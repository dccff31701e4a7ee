"""Image quality metrics as the frame-interpolation literature reports them.

PSNR: -10 log10(MSE) per image on [0, 1] RGB, capped at 100 dB (a perfect prediction), then averaged.
SSIM: Wang et al. with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per channel on
the 'valid' region (no padding) and averaged: the MATLAB-style SSIM; it equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.
"""
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0


def psnr(prediction, target):
    """prediction, target: N x C x H x W in [0, 1]. Returns N PSNR values in dB (capped at 100)."""
    mse = (prediction.double() - target.double()).pow(2).flatten(1).mean(1)
    return (-10 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP / 10)))).float()


def _gaussian_window(size=11, sigma=1.5, dtype=torch.float64, device=None):
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(prediction, target, window_size=11, sigma=1.5):
    """prediction, target: N x C x H x W in [0, 1] (H, W >= 11). Returns N SSIM values."""
    x, y = prediction.double(), target.double()
    n, c, h, w = x.shape
    if min(h, w) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size}x{window_size}, got {h}x{w}")
    window = _gaussian_window(window_size, sigma, x.dtype, x.device).expand(c, 1, window_size, window_size)
    filt = lambda z: F.conv2d(z, window, groups=c)
    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x ** 2
    var_y = filt(y * y) - mu_y ** 2
    cov = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1).float()


def quantize_8bit(image):
    """Round a [0, 1] image to the nearest of the 256 levels an 8-bit PNG would store."""
    return torch.round(image.clamp(0, 1) * 255) / 255
