"""Image-quality metrics shared by the stages: PSNR and SSIM.

Images are float arrays/tensors in [0, 1] (``data_range`` otherwise), shaped (H,W,C) or (H,W).
numpy arrays and torch tensors are both accepted; :func:`psnr` and :func:`ssim` return Python
floats, :func:`ssim_torch` a differentiable 0-dim tensor (for losses).

SSIM is the standard one of Wang et al. (2004): 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, population statistics, averaged over the valid (un-padded) window
positions and over channels. This is what ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``
computes (tests check the two agree).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _t(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).cpu()
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _check(img, ref):
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: {tuple(img.shape)} vs {tuple(ref.shape)}")


def mse(img, ref, mask=None) -> float:
    a, b = _t(img), _t(ref)
    _check(a, b)
    d = (a - b) ** 2
    if mask is None:
        return float(d.mean())
    m = _t(mask)
    if m.dim() == d.dim() - 1:
        m = m.unsqueeze(-1)
    m = m.expand_as(d)
    if float(m.sum()) <= 0:
        raise ValueError("psnr: empty mask")
    return float((d * m).sum() / m.sum())


def psnr(img, ref, mask=None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, over all pixels or the pixels where ``mask`` > 0
    (``mask`` (H,W) or (H,W,1), used as weights). Identical images give ``inf``."""
    e = mse(img, ref, mask)
    if e <= 0:
        return float("inf")
    return 10.0 * math.log10(data_range**2 / e)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        x = x[..., None]
    if x.dim() != 3:
        raise ValueError("ssim expects (H,W) or (H,W,C) images")
    return x.permute(2, 0, 1).unsqueeze(0)


def ssim_torch(img: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Differentiable mean SSIM of two (H,W[,C]) tensors (same dtype/device)."""
    _check(img, ref)
    x, y = _to_nchw(img), _to_nchw(ref)
    C = x.shape[1]
    if min(x.shape[-2:]) < window:
        raise ValueError(f"ssim: image smaller than the {window}x{window} window")
    g = gaussian_window(window, sigma, x.dtype).to(x.device)
    kx = g.reshape(1, 1, 1, -1).repeat(C, 1, 1, 1)
    ky = g.reshape(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def filt(z):
        return F.conv2d(F.conv2d(z, kx, groups=C), ky, groups=C)

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def ssim(img, ref, data_range: float = 1.0) -> float:
    """Mean SSIM (standard 11x11 Gaussian window, sigma 1.5) of two images."""
    return float(ssim_torch(_t(img), _t(ref), data_range))


def image_scores(img, ref, head) -> dict:
    """The per-image scores of held-out frames and other cameras: PSNR and SSIM over the whole
    crop, PSNR inside the ``head`` mask (None where the mask is empty)."""
    return {"psnr": psnr(img, ref), "ssim": ssim(img, ref),
            "psnr_head": psnr(img, ref, mask=head) if float(head.sum()) > 0 else None}
