"""Small networks shared by the mesh stage and the Gaussian avatar (paper Eq. 3 and Eq. 6).

    c_x    = MLP_color(f, beta)
    pos_x  = x + MLP_deform(f, gamma(x), beta)     (expression-conditioned deformation)
    attr_x = MLP_attr(f, beta)                     (scale / rotation / opacity offsets)

``f`` is a learnable per-point feature, ``beta`` the expression coefficients (52 ARKit-style
blendshapes from MediaPipe, see docs/FORMATS.md) and ``gamma`` a sinusoidal positional encoding.
The same :class:`DeformField` class is used by the DMTet stage and by the Gaussian avatar, so the
pretrained deformation weights can be copied over unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_EXPR = 52


def posenc(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """gamma(x) = [x, sin(2^k pi x), cos(2^k pi x)]_{k<n_freqs}; (..., 3) -> (..., 3 + 6 n_freqs)."""
    if n_freqs <= 0:
        return x
    freqs = (2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)) * math.pi
    xb = x.unsqueeze(-1) * freqs  # (...,3,F)
    enc = torch.cat([torch.sin(xb), torch.cos(xb)], dim=-1).flatten(-2)
    return torch.cat([x, enc], dim=-1)


def mlp(d_in: int, d_out: int, hidden: int = 128, layers: int = 3, zero_last: bool = False) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.SiLU()]
        d = hidden
    last = nn.Linear(d, d_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


def _expand_expr(expr: torch.Tensor, n: int) -> torch.Tensor:
    if expr.dim() == 1:
        expr = expr.unsqueeze(0)
    return expr.expand(n, -1) if expr.shape[0] == 1 else expr


def _mlp_with_expr(net: nn.Sequential, per_point: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
    """``net(cat([per_point, expr]))`` without materialising the expanded expression.

    When one expression vector is shared by all points, its share of the first layer
    (W_e @ beta) is computed once and broadcast: same weights and result, less work.
    """
    if expr.dim() == 1:
        expr = expr.unsqueeze(0)
    if expr.shape[0] != 1:
        return net(torch.cat([per_point, _expand_expr(expr, per_point.shape[0])], dim=-1))
    first = net[0]
    d = per_point.shape[-1]
    h = F.linear(per_point, first.weight[:, :d], first.bias) + F.linear(expr, first.weight[:, d:])
    return net[1:](h)


class DeformField(nn.Module):
    """MLP_deform(f, gamma(x), beta) -> displacement (starts at zero)."""

    def __init__(self, feat_dim: int = 32, n_expr: int = N_EXPR, n_freqs: int = 4, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.feat_dim, self.n_expr, self.n_freqs = feat_dim, n_expr, n_freqs
        self.net = mlp(feat_dim + 3 + 6 * n_freqs + n_expr, 3, hidden, layers, zero_last=True)

    def forward(self, feat: torch.Tensor, x: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
        return _mlp_with_expr(self.net, torch.cat([feat, posenc(x, self.n_freqs)], dim=-1), expr)


class ColorField(nn.Module):
    """MLP_color(f, beta) -> RGB in [0,1]."""

    def __init__(self, feat_dim: int = 32, n_expr: int = N_EXPR, hidden: int = 128, layers: int = 3, out_dim: int = 3):
        super().__init__()
        self.net = mlp(feat_dim + n_expr, out_dim, hidden, layers)

    def forward(self, feat: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_mlp_with_expr(self.net, feat, expr))


class AttributeField(nn.Module):
    """MLP_attr(f, beta) -> (d_log_scale(3), d_quat(4), d_opacity_logit(1)); starts at zero."""

    def __init__(self, feat_dim: int = 32, n_expr: int = N_EXPR, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.net = mlp(feat_dim + n_expr, 8, hidden, layers, zero_last=True)

    def forward(self, feat: torch.Tensor, expr: torch.Tensor):
        out = _mlp_with_expr(self.net, feat, expr)
        return out[:, :3], out[:, 3:7], out[:, 7]
