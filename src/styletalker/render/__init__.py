"""Differentiable 3D Gaussian rasterization.

    from styletalker.render import Camera, render
    out = render(means, quats, scales, opacities, colors, camera, background=(1, 1, 1))
    out.image  # (H, W, C)   out.alpha  # (H, W, 1)   out.depth  # (H, W, 1)

Inputs: means (N,3) world coords, quats (N,4) wxyz (any norm), scales (N,3) linear,
opacities (N,) in [0,1], colors (N,C). Differentiable w.r.t. all of them.
``backend``: "auto" (gsplat on CUDA tensors, fast CPU backend otherwise), "cpu", "gsplat", "dense".
Conventions are documented in :mod:`styletalker.render.common`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from .camera import Camera, look_at, scale_intrinsics, view_camera

__all__ = ["Camera", "look_at", "scale_intrinsics", "view_camera", "render", "RenderOutput", "available_backends", "backend_calls"]

# renders per backend since the process started (bench/gpu_check.py checks that CUDA runs used gsplat)
backend_calls: Counter = Counter()


@dataclass
class RenderOutput:
    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def available_backends() -> list[str]:
    out = ["dense"]
    try:
        from . import cpu  # noqa: F401

        out.append("cpu")
    except ImportError:
        pass
    if torch.cuda.is_available():
        try:
            import gsplat  # noqa: F401

            out.append("gsplat")
        except ImportError:
            pass
    return out


def render(means, quats, scales, opacities, colors, camera: Camera, background=None, backend: str = "auto") -> RenderOutput:
    if backend == "auto":
        if means.is_cuda and "gsplat" in available_backends():
            backend = "gsplat"
        elif "cpu" in available_backends():
            backend = "cpu"
        else:
            backend = "dense"
    if backend == "dense":
        from .dense import render_dense

        img, a, d = render_dense(means, quats, scales, opacities, colors, camera, background)
    elif backend == "cpu":
        from .cpu import render_cpu

        img, a, d = render_cpu(means, quats, scales, opacities, colors, camera, background)
    elif backend == "gsplat":
        from .gsplat_backend import render_gsplat

        img, a, d = render_gsplat(means, quats, scales, opacities, colors, camera, background)
    else:
        raise ValueError(f"unknown render backend {backend!r}; choose from auto, cpu, gsplat, dense")
    backend_calls[backend] += 1
    return RenderOutput(img, a, d)
