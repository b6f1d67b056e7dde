"""CUDA backend: gsplat's fused rasterizer with the conventions of :mod:`.common`.

Used automatically by ``render(..., backend="auto")`` for CUDA tensors when ``gsplat`` is
installed. Mapping: ``viewmats = world_to_cam``, ``Ks = K``, ``eps2d = 0.3`` (common.BLUR),
``near_plane/far_plane = camera.near/far``, ``packed=False``, ``render_mode="RGB+D"`` (the depth
channel is sum(w_i z_i), not normalised, as ours), classic (non-antialiased) mode; the background
is composited here exactly as in the other backends (``image + (1 - alpha) * background``).

Inputs are cast to float32 for gsplat and outputs back to the input dtype.

Known difference: gsplat clamps alpha at 0.999 where :mod:`.common` uses 0.99 (3DGS); only pixels
where a single Gaussian is nearly opaque differ. Tested on the CPU: the projection conventions
against gsplat's pure-PyTorch reference, and the argument/output wiring with a stand-in for
``gsplat.rasterization`` (tests/test_render.py). The CUDA kernels themselves are not exercised by
the test suite (no GPU here).
"""

from __future__ import annotations

import torch

from .common import BLUR

__all__ = ["render_gsplat"]


def render_gsplat(means, quats, scales, opacities, colors, camera, background=None):
    try:
        import gsplat
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("backend='gsplat' needs the gsplat package (pip install gsplat)") from e
    dev, dt = means.device, means.dtype
    f32 = dict(device=dev, dtype=torch.float32)  # gsplat's kernels are float32
    H, W = int(camera.height), int(camera.width)
    C = colors.shape[-1]
    viewmats = torch.as_tensor(camera.world_to_cam).to(**f32)[None]
    Ks = torch.as_tensor(camera.K).to(**f32)[None]
    rc, ra, _meta = gsplat.rasterization(
        means.to(**f32), quats.to(**f32), scales.to(**f32), opacities.reshape(-1).to(**f32), colors.to(**f32),
        viewmats, Ks, W, H,
        near_plane=float(camera.near), far_plane=float(camera.far), eps2d=BLUR, packed=False,
        render_mode="RGB+D", rasterize_mode="classic", sh_degree=None, tile_size=16, backgrounds=None,
    )
    img, dep, alpha = rc[0, ..., :C].to(dt), rc[0, ..., C:].to(dt), ra[0].to(dt)
    if background is not None:
        bg = torch.as_tensor(background, dtype=img.dtype, device=img.device).reshape(1, 1, -1)
        img = img + (1 - alpha) * bg
    return img, alpha, dep
