"""The driving measures of bench/drive.py (styletalker.drive_metrics) respond to what they measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker.drive_metrics import channel_correlation, speckle_score, temporal_flicker


@pytest.fixture(scope="module")
def render(franck_avatar_work):
    from styletalker.animate import load_scene

    scene = load_scene(franck_avatar_work)
    with torch.no_grad():
        out = scene.avatar.render(scene.neutral_expression, scene.camera(scene.ref_pose), background=torch.ones(3))
    return out.image.clamp(0, 1).numpy(), out.alpha.numpy()[..., 0]


def test_speckle_counts_dots_and_holes(render):
    img, alpha = render
    base = speckle_score(img, alpha)
    rng = np.random.default_rng(0)
    inside = np.argwhere(alpha > 0.9)
    pick = inside[rng.choice(len(inside), size=len(inside) // 50, replace=False)]
    dotted = img.copy()
    dotted[pick[:, 0], pick[:, 1]] = rng.choice([0.0, 1.0], size=(len(pick), 1))  # black / white dots
    assert speckle_score(dotted, alpha) > base + 0.01
    holed = alpha.copy()
    holed[pick[:, 0], pick[:, 1]] = 0.0  # see-through pinholes inside the head
    assert speckle_score(img, holed) > base + 0.01
    # a blurred render has fewer isolated dots than the original
    import cv2

    assert speckle_score(cv2.GaussianBlur(dotted, (5, 5), 1.5), alpha) < speckle_score(dotted, alpha)


def test_flicker_sees_temporal_noise_not_smooth_motion(render):
    img, alpha = render
    T = 8
    smooth = np.stack([np.roll(img, t, axis=1) for t in range(T)])  # the head sliding 1 px per frame
    alphas = np.stack([np.roll(alpha, t, axis=1) for t in range(T)])
    rng = np.random.default_rng(1)
    noisy = np.clip(smooth + rng.normal(0, 0.05, smooth.shape), 0, 1).astype(np.float32)
    f_smooth = temporal_flicker(smooth, alphas)
    f_noisy = temporal_flicker(noisy, alphas)
    assert f_noisy > 3 * f_smooth and f_noisy > 0.02


def test_channel_correlation():
    t = np.linspace(0, 6, 60)
    d = 0.4 * (np.sin(t) + 1)
    assert channel_correlation(d * 0.5 + 0.1, d) == pytest.approx(1.0)
    a = -d
    a[::7] = np.nan  # frames where no face was found on the avatar are left out
    assert channel_correlation(a, d) == pytest.approx(-1.0)
    assert channel_correlation(d, np.full_like(d, 0.3)) is None  # the driver never moves this channel
