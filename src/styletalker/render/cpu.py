"""Fast CPU backend: tile-based, depth-sorted, front-to-back alpha compositing.

Everything runs in the C++ extension ``csrc/raster_cpu.cpp`` with hand-written backwards:
projection (the math of :func:`.common.project`; the PyTorch version is used instead when the
camera requires grad), stable depth sort, binning into 16x16 tiles with exact alpha-threshold
culling, SIMD compositing per tile and the back-to-front replay backward. If the extension cannot
be built, a pure-PyTorch implementation (:mod:`.raster_torch`) is used with a warning. Both
follow the conventions of :mod:`.common` exactly and match :mod:`.dense`. See docs/render.md.
"""

from __future__ import annotations

import torch

from ._ext import get_extension
from .common import project

__all__ = ["render_cpu", "rasterize_cpu", "project_cpu", "cpu_implementation"]


class _RasterizeExt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xy, conic, opacity, feats, order, height, width):
        out, T, last, state = get_extension().forward(xy, conic, opacity, feats, order, height, width)
        ctx.state = state
        ctx.save_for_backward(T, last)
        ctx.mark_non_differentiable(last)
        return out, T

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_T):
        T, last = ctx.saved_tensors
        if g_out is None:
            g_out = torch.zeros(T.shape + (ctx.state.n_feats,), dtype=T.dtype)
        if g_T is None:
            g_T = torch.zeros_like(T)
        gxy, gcon, gop, gfe = get_extension().backward(ctx.state, T, last, g_out.contiguous(), g_T.contiguous())
        return gxy, gcon, gop, gfe, None, None, None


class _ProjectExt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, camvec):
        xy, conic, depth, valid = get_extension().project_forward(means, quats, scales, camvec)
        ctx.save_for_backward(means, quats, scales, camvec)
        ctx.mark_non_differentiable(valid)
        return xy, conic, depth, valid

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_xy, g_conic, g_depth, _g_valid):
        means, quats, scales, camvec = ctx.saved_tensors
        z = torch.zeros
        g_xy = z(means.shape[0], 2, dtype=means.dtype) if g_xy is None else g_xy.contiguous()
        g_conic = z(means.shape[0], 3, dtype=means.dtype) if g_conic is None else g_conic.contiguous()
        g_depth = z(means.shape[0], dtype=means.dtype) if g_depth is None else g_depth.contiguous()
        gm, gq, gs = get_extension().project_backward(means, quats, scales, camvec, g_xy, g_conic, g_depth)
        return gm, gq, gs, None


def _camera_vector(camera, dtype) -> torch.Tensor:
    W = torch.as_tensor(camera.world_to_cam).detach().cpu().double().tolist()
    K = torch.as_tensor(camera.K).detach().cpu().double().tolist()
    vals = [W[r][c] for r in range(3) for c in range(3)] + [W[0][3], W[1][3], W[2][3]]
    vals += [K[0][0], K[1][1], K[0][2], K[1][2], camera.width, camera.height, camera.near, camera.far]
    return torch.tensor(vals, dtype=dtype)


def project_cpu(means, quats, scales, camera):
    """(xy, conic, depth, valid) as :func:`.common.project`, in C++ when possible.

    The C++ path has no gradient for the camera, so a camera whose K / world_to_cam require grad
    (pose refinement) goes through the PyTorch implementation.
    """
    cam_grad = torch.is_tensor(camera.K) and camera.K.requires_grad or (
        torch.is_tensor(camera.world_to_cam) and camera.world_to_cam.requires_grad
    )
    if get_extension() is not None and not cam_grad:
        return _ProjectExt.apply(
            means.contiguous(), quats.contiguous(), scales.contiguous(), _camera_vector(camera, means.dtype)
        )
    pr = project(means, quats, scales, camera)
    return pr.xy, pr.conic, pr.depth, pr.valid


def sort_by_depth(depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Indices of the valid Gaussians, front to back; ties by index (as :mod:`.dense`)."""
    ext = get_extension()
    if ext is not None:
        return ext.sort_by_depth(depth.contiguous(), valid.contiguous())
    order = torch.argsort(torch.where(valid, depth, torch.full_like(depth, float("inf"))), stable=True)
    return order[valid[order]]


def cpu_implementation() -> str:
    """"ext" (C++ extension) or "torch" (pure-PyTorch fallback)."""
    return "ext" if get_extension() is not None else "torch"


def _resolve(impl: str | None) -> str:
    if impl is None:
        return cpu_implementation()
    if impl not in ("ext", "torch"):
        raise ValueError(f"impl must be 'ext' or 'torch', got {impl!r}")
    if impl == "ext" and get_extension() is None:
        from ._ext import extension_error

        raise RuntimeError(f"the C++ CPU rasterizer is unavailable: {extension_error()}")
    return impl


def rasterize_cpu(xy, conic, opacity, feats, order, height: int, width: int, impl: str | None = None):
    """Composite projected Gaussians front to back.

    xy (N,2), conic (N,3), opacity (N,), feats (N,F) — all one float dtype; order (M,) int64: the
    indices of the Gaussians to draw, sorted front to back. Returns (out (H,W,F), T_final (H,W)).
    """
    impl = _resolve(impl)
    if impl == "ext":
        return _RasterizeExt.apply(
            xy.contiguous(), conic.contiguous(), opacity.contiguous(), feats.contiguous(),
            order.contiguous(), int(height), int(width),
        )
    from .raster_torch import rasterize_torch

    return rasterize_torch(xy, conic, opacity, feats, order, int(height), int(width))


def render_cpu(means, quats, scales, opacities, colors, camera, background=None, impl: str | None = None):
    """Render on the CPU; same signature/outputs as :func:`.dense.render_dense`."""
    if means.is_cuda:
        raise ValueError("render_cpu needs CPU tensors (use backend='gsplat' or 'auto' on CUDA)")
    dtype = means.dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"render_cpu supports float32/float64 inputs, got {dtype}")
    n = means.shape[0] if means.dim() == 2 else -1
    opacities = opacities.reshape(-1)
    for name, t, tail in (("means", means, (3,)), ("quats", quats, (4,)), ("scales", scales, (3,))):
        if t.dim() != 2 or tuple(t.shape[1:]) != tail or t.shape[0] != n:
            raise ValueError(f"render: {name} must be (N,{tail[0]}) with N = {n}, got {tuple(t.shape)}")
    if colors.dim() != 2 or colors.shape[0] != n or opacities.shape[0] != n:
        raise ValueError(f"render: need colors (N,C) and opacities (N,), N = {n}; got {tuple(colors.shape)}, "
                         f"{tuple(opacities.shape)}")
    quats, scales, colors, opacities = quats.to(dtype), scales.to(dtype), colors.to(dtype), opacities.to(dtype)
    H, W = int(camera.height), int(camera.width)
    if H <= 0 or W <= 0:
        raise ValueError(f"render: camera size must be positive, got {W}x{H}")
    C = colors.shape[-1]
    impl = _resolve(impl)
    if impl == "ext":
        xy, conic, depth, valid = project_cpu(means, quats, scales, camera)
    else:
        pr = project(means, quats, scales, camera)
        xy, conic, depth, valid = pr.xy, pr.conic, pr.depth, pr.valid
    order = sort_by_depth(depth.detach(), valid)
    feats = torch.cat([colors, depth[:, None]], dim=1)
    out, T = rasterize_cpu(xy, conic, opacities, feats, order, H, W, impl=impl)
    img = out[..., :C]
    dep = out[..., C:]
    alpha = (1 - T).unsqueeze(-1)
    if background is not None:
        bg = torch.as_tensor(background, dtype=img.dtype, device=img.device).reshape(1, 1, -1)
        img = img + (1 - alpha) * bg
    return img, alpha, dep
