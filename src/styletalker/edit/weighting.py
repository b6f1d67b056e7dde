"""Landmark-driven loss weighting (paper Sec. 3.3, Eq. 8 and Appendix A).

* every edit iteration draws an edit strength ``b ~ N(mean, std)`` (paper: N(0.5, 1));
* every Gaussian gets ``w = 2 * sigmoid(-alpha * d)``, ``d`` = distance of its centre to the nearest
  3D landmark in canonical head space (decimetres; ``alpha = 5`` gives w = 0.76 at 1 cm and 0.01
  at 10 cm);
* the L1 edit loss is weighted by ``w`` when ``b >= boundary`` and by ``1 - w`` otherwise.

The per-Gaussian weight is turned into a per-pixel weight map by rendering ``w`` as a 4th colour
channel in the same rasterisation pass as the RGB image (alpha-composited exactly like colour, with
weight 0 for the background, where no landmark is near), so ``W_pix = sum_i alpha_i T_i w_i``.
Then ``1 - W_pix`` is the composited ``1 - w`` with weight 1 for the background. The weight map is
detached: it scales the loss, it is not itself optimised.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .options import DEFAULT_ALPHA, DEFAULT_B_MEAN, DEFAULT_B_STD, DEFAULT_BOUNDARY  # noqa: F401


def landmark_weight(d: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """w = 2 * sigmoid(-alpha * d): 1 on a landmark, decreasing with distance ``d`` (>= 0)."""
    d = torch.as_tensor(d, dtype=torch.float32)
    return 2.0 * torch.sigmoid(-float(alpha) * d.clamp_min(0.0))


def sample_b(rng: np.random.Generator, mean: float = DEFAULT_B_MEAN, std: float = DEFAULT_B_STD,
             fixed: float | None = None) -> float:
    """Edit strength of one iteration: ``fixed`` if given, else a draw from N(mean, std)."""
    if fixed is not None:
        return float(fixed)
    return float(rng.normal(mean, std))


def loss_weight_map(weight_map: torch.Tensor, b: float, boundary: float = DEFAULT_BOUNDARY,
                    landmark_weighting: bool = True) -> torch.Tensor:
    """Per-pixel factor of Eq. 8: ``W`` if b >= boundary, ``1 - W`` if b < boundary, 1 when off."""
    if not landmark_weighting:
        return torch.ones_like(weight_map)
    return weight_map if b >= boundary else 1.0 - weight_map


def edit_loss(render: torch.Tensor, edited: torch.Tensor, weight_map: torch.Tensor | None, b: float,
              boundary: float = DEFAULT_BOUNDARY, landmark_weighting: bool = True) -> torch.Tensor:
    """Eq. 7/8: mean over pixels and channels of ``factor * |C_edit - C_render|``.

    render, edited: (H, W, 3); weight_map: (H, W) or (H, W, 1) composited w (ignored when
    ``landmark_weighting`` is False).
    """
    diff = (edited.to(render) - render).abs()
    if not landmark_weighting or weight_map is None:
        return diff.mean()
    wm = weight_map.detach().to(render)
    if wm.dim() == 2:
        wm = wm.unsqueeze(-1)
    return (loss_weight_map(wm, b, boundary, True) * diff).mean()


def render_with_weight(state, w: torch.Tensor, camera, background=(1.0, 1.0, 1.0), backend: str = "auto"):
    """Render RGB and the per-pixel landmark weight map in one pass.

    ``state`` is a GaussianState (or anything with means/quats/scales/opacities/colors); ``w`` (N,)
    per-Gaussian weights. Returns ``(rgb (H,W,3), weight_map (H,W), alpha (H,W,1))``.
    """
    from ..render import render

    colors = torch.cat([state.colors, w.detach().to(state.colors).reshape(-1, 1)], dim=-1)
    bg = torch.tensor(list(background) + [0.0], dtype=colors.dtype)
    out = render(state.means, state.quats, state.scales, state.opacities, colors, camera, bg, backend)
    return out.image[..., :3], out.image[..., 3].detach(), out.alpha


def weight_at_distance_cm(cm: float, alpha: float = DEFAULT_ALPHA) -> float:
    """w for a distance given in centimetres (canonical space is in decimetres)."""
    return 2.0 / (1.0 + math.exp(alpha * cm / 10.0))
