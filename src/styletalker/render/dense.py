"""Naive dense reference rasterizer: every Gaussian against every pixel.

Slow and memory-hungry by design (O(pixels x Gaussians)); it is the ground truth that the
fast backends are tested against, and the baseline of bench/render.py. Pixels are processed
in chunks so that it still runs at 256x256 with tens of thousands of Gaussians.
"""

from __future__ import annotations

import torch

from .common import ALPHA_MAX, ALPHA_MIN, T_MIN, project


def render_dense(means, quats, scales, opacities, colors, camera, background=None, chunk: int = 4096):
    H, W = camera.height, camera.width
    C = colors.shape[-1]
    pr = project(means, quats, scales, camera)
    # front to back; equal depths keep index order (stable sort), as in every backend
    order = torch.argsort(torch.where(pr.valid, pr.depth, torch.full_like(pr.depth, float("inf"))), stable=True)
    order = order[pr.valid[order]]
    xy, conic, depth = pr.xy[order], pr.conic[order], pr.depth[order]
    op, col = opacities.reshape(-1)[order], colors[order]

    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=means.dtype, device=means.device) + 0.5,
        torch.arange(W, dtype=means.dtype, device=means.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
    imgs, alphas, depths = [], [], []
    for s in range(0, pix.shape[0], chunk):
        p = pix[s : s + chunk]
        d = p[:, None, :] - xy[None, :, :]  # (P,N,2)
        dx, dy = d[..., 0], d[..., 1]
        power = -0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) - conic[:, 1] * dx * dy
        a = torch.clamp(op * torch.exp(power), max=ALPHA_MAX)
        a = torch.where((power <= 0) & (a >= ALPHA_MIN), a, torch.zeros_like(a))
        one_minus = 1 - a
        T_incl = torch.cumprod(one_minus, dim=1)
        T_excl = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], dim=1)
        keep = T_incl > T_MIN  # stop compositing once transmittance would fall below T_MIN
        w = torch.where(keep, a * T_excl, torch.zeros_like(a))
        imgs.append(w @ col)
        depths.append(w @ depth)
        # final transmittance = product over kept contributions
        T_fin = torch.where(keep, one_minus, torch.ones_like(one_minus)).prod(dim=1)
        alphas.append(1 - T_fin)
    img = torch.cat(imgs).reshape(H, W, C)
    alpha = torch.cat(alphas).reshape(H, W, 1)
    dep = torch.cat(depths).reshape(H, W, 1)
    if background is not None:
        bg = torch.as_tensor(background, dtype=img.dtype, device=img.device).reshape(1, 1, -1)
        img = img + (1 - alpha) * bg
    return img, alpha, dep
