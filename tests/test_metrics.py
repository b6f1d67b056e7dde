import math

import numpy as np
import pytest
import torch

from styletalker.metrics import psnr, ssim, ssim_torch


def _img(seed, shape=(48, 40, 3)):
    rng = np.random.default_rng(seed)
    # smooth-ish image so SSIM is not trivially ~0
    base = rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1, shape[2]))
    img = np.kron(base, np.ones((8, 8, 1)))[: shape[0], : shape[1]]
    return np.clip(img + 0.05 * rng.standard_normal(shape), 0, 1)


def test_psnr_known_values():
    a = _img(0)
    assert psnr(a, a) == math.inf
    # constant error 0.1 -> MSE 0.01 -> 20 dB
    b = np.clip(a, 0.2, 0.8)
    assert psnr(b + 0.1, b) == pytest.approx(20.0, abs=1e-9)
    # Gaussian noise sigma 0.05 -> ~26.02 dB
    rng = np.random.default_rng(1)
    n = 0.05 * rng.standard_normal((256, 256, 3))
    assert psnr(0.5 + n, np.full_like(n, 0.5)) == pytest.approx(20 * math.log10(1 / 0.05), abs=0.1)
    # mask: only the masked pixels count
    c = a.copy()
    c[:10] = 1 - c[:10]
    mask = np.zeros(a.shape[:2])
    mask[10:] = 1
    assert psnr(c, a, mask=mask) == math.inf
    assert psnr(c, a) < 20
    with pytest.raises(ValueError):
        psnr(a, a[:, :10])


def test_ssim_known_values_and_skimage():
    a = _img(2)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # constant images: SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1) exactly
    c1 = 0.01**2
    x, y = 0.3, 0.6
    assert ssim(np.full((20, 20), x), np.full((20, 20), y)) == pytest.approx((2 * x * y + c1) / (x * x + y * y + c1), rel=1e-9)
    b = np.clip(a + 0.1 * np.random.default_rng(3).standard_normal(a.shape), 0, 1)
    s = ssim(b, a)
    assert 0.2 < s < 0.95
    skm = pytest.importorskip("skimage.metrics")
    ref = skm.structural_similarity(b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert s == pytest.approx(ref, abs=1e-6)
    # torch inputs and gradients
    t = torch.tensor(b, requires_grad=True)
    v = ssim_torch(t, torch.tensor(a))
    v.backward()
    assert float(v.detach()) == pytest.approx(s, abs=1e-9)
    assert t.grad.abs().sum() > 0
