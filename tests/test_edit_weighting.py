"""Landmark weighting of the edit loss (paper Eq. 8): w formula, boundary switch, weight-map render."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from styletalker.edit.weighting import (edit_loss, landmark_weight, loss_weight_map, render_with_weight, sample_b,
                                        weight_at_distance_cm)
from styletalker.render import Camera


def test_w_formula_values():
    d = torch.tensor([0.0, 0.1, 0.2, 0.5, 1.0])  # decimetres: 0, 1, 2, 5, 10 cm
    w = landmark_weight(d, alpha=5.0)
    expected = [2 / (1 + math.exp(5 * x)) for x in d.tolist()]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    assert w[0] == pytest.approx(1.0)
    assert w[1] == pytest.approx(0.7551, abs=1e-4)  # 1 cm
    assert w[4] == pytest.approx(0.01339, abs=1e-4)  # 10 cm
    assert torch.all(w[1:] < w[:-1])  # decreasing with distance
    # alpha controls the localisation; d < 0 is clamped (distances are >= 0)
    assert landmark_weight(torch.tensor([0.1]), alpha=20.0)[0] < 0.3
    assert landmark_weight(torch.tensor([-1.0]))[0] == pytest.approx(1.0)
    assert weight_at_distance_cm(1.0) == pytest.approx(float(w[1]), abs=1e-6)


def test_loss_switches_weighting_at_the_boundary():
    torch.manual_seed(0)
    render = torch.rand(6, 5, 3)
    edited = torch.rand(6, 5, 3)
    W = torch.rand(6, 5)
    diff = (edited - render).abs()
    want_hi = (W[..., None] * diff).mean()
    want_lo = ((1 - W[..., None]) * diff).mean()
    assert edit_loss(render, edited, W, 0.5) == pytest.approx(float(want_hi), rel=1e-6)
    assert edit_loss(render, edited, W, 0.49999) == pytest.approx(float(want_lo), rel=1e-6)
    assert edit_loss(render, edited, W, 2.0) == pytest.approx(float(want_hi), rel=1e-6)
    assert edit_loss(render, edited, W, -1.0) == pytest.approx(float(want_lo), rel=1e-6)
    # configurable boundary (paper Fig. 3: 0.3 / 0.5 / 0.7)
    assert edit_loss(render, edited, W, 0.6, boundary=0.7) == pytest.approx(float(want_lo), rel=1e-6)
    assert edit_loss(render, edited, W, 0.35, boundary=0.3) == pytest.approx(float(want_hi), rel=1e-6)
    # weighting off: plain L1 whatever b is
    assert edit_loss(render, edited, W, 0.9, landmark_weighting=False) == pytest.approx(float(diff.mean()), rel=1e-6)
    assert torch.equal(loss_weight_map(W, 0.1, landmark_weighting=False), torch.ones_like(W))
    # gradients flow into the render only, not into the (detached) weight map
    r = render.clone().requires_grad_(True)
    Wg = W.clone().requires_grad_(True)
    edit_loss(r, edited, Wg, 0.7).backward()
    assert r.grad is not None and Wg.grad is None


def test_sample_b_distribution():
    rng = np.random.default_rng(0)
    bs = np.array([sample_b(rng, 0.5, 1.0) for _ in range(4000)])
    assert abs(bs.mean() - 0.5) < 0.06 and abs(bs.std() - 1.0) < 0.06
    assert sample_b(rng, 0.5, 1.0, fixed=0.8) == 0.8


def _toy_scene():
    """Two nearly opaque, well separated Gaussians in front of a 32x24 camera."""
    means = torch.tensor([[-0.6, 0.0, 3.0], [0.6, 0.0, 3.0]])
    quats = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    scales = torch.full((2, 3), 0.15)
    opac = torch.tensor([0.99, 0.99])
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    cam = Camera.from_fov(32, 24, 40.0)

    class G:
        pass

    g = G()
    g.means, g.quats, g.scales, g.opacities, g.colors = means, quats, scales, opac, colors
    return g, cam


@pytest.mark.parametrize("backend", ["dense", "auto"])
def test_weight_map_render_on_toy_scene(backend):
    from styletalker.render import render

    g, cam = _toy_scene()
    w = torch.tensor([1.0, 0.25])
    rgb, W, alpha = render_with_weight(g, w, cam, background=(1.0, 1.0, 1.0), backend=backend)
    ref = render(g.means, g.quats, g.scales, g.opacities, g.colors, cam, torch.ones(3), backend="dense")
    assert torch.allclose(rgb, ref.image, atol=1e-4)  # the extra channel does not disturb RGB
    # project the centres: the weight map there is ~ opacity * w; far away it is 0 (background)
    K = cam.K
    for k in range(2):
        u = int(K[0, 0] * g.means[k, 0] / g.means[k, 2] + K[0, 2])
        v = int(K[1, 1] * g.means[k, 1] / g.means[k, 2] + K[1, 2])
        assert W[v, u] == pytest.approx(0.99 * float(w[k]), rel=0.07)
    assert float(W[0, 0]) == pytest.approx(0.0, abs=1e-6)
    # per pixel W = sum_i alpha_i T_i w_i; with pure red / pure blue Gaussians over white the
    # red (blue) channel minus the background share T_final is the red (blue) Gaussian's alpha_i T_i
    Tf = 1 - ref.alpha[..., 0]
    expect = (ref.image[..., 0] - Tf) * w[0] + (ref.image[..., 2] - Tf) * w[1]
    assert torch.allclose(W, expect, atol=1e-4)
    assert float(W.max()) > 0.9 and float(((W > 0.2) & (W < 0.3)).sum()) > 3
    # (1 - w) composited over a background of weight 1 equals 1 - W exactly
    g2 = type(g)()
    g2.means, g2.quats, g2.scales, g2.opacities = g.means, g.quats, g.scales, g.opacities
    g2.colors = (1 - w).reshape(-1, 1)
    inv = render(g2.means, g2.quats, g2.scales, g2.opacities, g2.colors, cam, torch.ones(1), backend="dense").image[..., 0]
    assert torch.allclose(inv, 1 - W, atol=1e-4)
