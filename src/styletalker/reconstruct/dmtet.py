"""Stage 1 (paper Sec. 3.2, "mesh-based deformation field"): DMTet head from a unit sphere.

    c_x   = MLP_color(f, beta)                    (styletalker.models.ColorField)
    pos_x = x + MLP_deform(f, gamma(x), beta)     (styletalker.models.DeformField)

``x`` are the vertices of the surface extracted by marching tetrahedra from a learnable SDF on a
tetrahedral grid (plus learnable, bounded grid offsets), ``f`` per-grid-vertex learnable features
interpolated onto the surface with the same marching weights. The same :class:`DeformField` is
later copied into the Gaussian avatar (stage 2), so its weights transfer unchanged.

Predicted expression-conditioned landmarks: learnable neutral 3D landmarks ``L`` (initialised
from the neutral frame's tracked 3D landmarks) moved by the same deformation field with features
trilinearly sampled from the grid at ``L``: ``P(beta) = L + MLP_deform(f(L), gamma(L), beta)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import N_EXPR, ColorField, DeformField, ExpressionBasis, ExpressionNorm
from .tetgrid import MarchingResult, TetGrid, build_tet_grid, marching_tets, tet_edges


class DMTetHead(nn.Module):
    def __init__(
        self,
        landmarks: torch.Tensor,
        res: int = 32,
        extent: float = 1.6,
        center=(0.0, 0.0, 0.0),
        radius: float = 1.0,
        feat_dim: int = 32,
        n_expr: int = N_EXPR,
        n_freqs: int = 4,
        hidden: int = 128,
        offset_scale: float = 0.25,
        feat_init: float = 0.01,
        smooth: float = 1.0,
    ):
        super().__init__()
        center = torch.as_tensor(center, dtype=torch.float32).reshape(3)
        self.config = dict(res=int(res), extent=float(extent), center=center.tolist(), radius=float(radius),
                           feat_dim=int(feat_dim), n_expr=int(n_expr), n_freqs=int(n_freqs), hidden=int(hidden),
                           offset_scale=float(offset_scale), n_landmarks=int(landmarks.shape[0]), smooth=float(smooth))
        g = build_tet_grid(res, extent)
        self.register_buffer("grid_verts", g.verts + center)
        self.register_buffer("tets", g.tets)
        self.register_buffer("center", center)
        edges, tedges = tet_edges(g.tets, g.verts.shape[0])
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("tet_edge_ids", tedges, persistent=False)
        self.sdf = nn.Parameter((self.grid_verts - center).norm(dim=-1) - radius)
        self.offsets = nn.Parameter(torch.zeros_like(self.grid_verts))
        self.features = nn.Parameter(feat_init * torch.randn(self.grid_verts.shape[0], feat_dim))
        self.landmarks = nn.Parameter(landmarks.detach().clone().float())
        self.deform = DeformField(feat_dim, n_expr, n_freqs, hidden)
        self.color = ColorField(feat_dim, n_expr, hidden)
        self.expr_norm = ExpressionNorm(n_expr)  # fitted to the clip by the pipeline (model.expr_normalize)
        self.basis = ExpressionBasis(n_expr)  # fitted to the clip by the pipeline (model.expr_basis)

    # -- grid ------------------------------------------------------------------------------
    def _blur(self, values: torch.Tensor) -> torch.Tensor:
        """Gaussian blur (sigma = ``smooth`` cells) of per-grid-vertex values (V,C).

        The grid quantities are parametrised as blurred volumes: every parameter moves a smooth
        bump, so Adam's per-parameter steps cannot create vertex-level noise (spikes, bubbles).
        Separable, as three small dense matrix products (much faster than conv3d on CPU).
        """
        if self.config["smooth"] <= 0:
            return values
        n = self.config["res"] + 1
        B = self._blur_matrix().to(values)
        C = values.shape[1]
        vol = values.reshape(n, n, n, C)  # (z, y, x, C): vertex id = x + n (y + n z)
        vol = torch.einsum("ij,zyjc->zyic", B, vol)
        vol = torch.einsum("ij,zjxc->zixc", B, vol)
        vol = torch.einsum("ij,jyxc->iyxc", B, vol)
        return vol.reshape(-1, C)

    def _blur_matrix(self) -> torch.Tensor:
        if getattr(self, "_bm", None) is None:
            n = self.config["res"] + 1
            sig = self.config["smooth"]
            r = max(1, int(round(2 * sig)))
            i = torch.arange(n)
            B = torch.zeros(n, n)
            for d in range(-r, r + 1):
                j = (i + d).clamp(0, n - 1)  # replicate border
                B[i, j] += float(torch.exp(torch.tensor(-0.5 * (d / sig) ** 2)))
            self._bm = B / B.sum(1, keepdim=True)
        return self._bm

    def grid_fields(self):
        """Smoothed (sdf (V,), positions (V,3), features (V,C)) on the grid."""
        cell = 2 * self.config["extent"] / self.config["res"]
        packed = self._blur(torch.cat([self.sdf[:, None], self.offsets, self.features], 1))
        sdf = packed[:, 0]
        pos = self.grid_verts + torch.tanh(packed[:, 1:4]) * (cell * self.config["offset_scale"])
        return sdf, pos, packed[:, 4:]

    @property
    def grid(self) -> TetGrid:
        c = self.config
        return TetGrid(self.grid_verts - self.center, self.tets, c["res"], c["extent"])

    def sample(self, values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return self.grid.sample(values, points - self.center)

    def sdf_at(self, points: torch.Tensor, sdf: torch.Tensor | None = None) -> torch.Tensor:
        if sdf is None:
            sdf = self.grid_fields()[0]
        return self.sample(sdf[:, None], points)[:, 0]

    # -- surface -----------------------------------------------------------------------------
    def extract(self) -> MarchingResult:
        """Canonical surface (differentiable): verts, faces, attrs = per-vertex features."""
        sdf, pos, feat = self.grid_fields()
        m = marching_tets(pos, sdf, self.tets, feat, (self.edges, self.tet_edge_ids))
        m.grid = (sdf, pos, feat)
        return m

    def mlp_displacement(self, mesh: MarchingResult, expression: torch.Tensor) -> torch.Tensor:
        """MLP_deform's share (V,3) of :meth:`displacement`."""
        return self.deform(mesh.attrs, mesh.verts, self.expr_norm(expression))

    def displacement(self, mesh: MarchingResult, expression: torch.Tensor) -> torch.Tensor:
        """Displacement (V,3) of the canonical surface's vertices for ``expression``: MLP_deform
        plus the linear expression basis (zero unless fitted, ``model.expr_basis``)."""
        return self.mlp_displacement(mesh, expression) + self.basis(mesh.verts, expression)

    def deformed(self, mesh: MarchingResult, expression: torch.Tensor) -> torch.Tensor:
        return mesh.verts + self.displacement(mesh, expression)

    def colors(self, mesh: MarchingResult, expression: torch.Tensor) -> torch.Tensor:
        return self.color(mesh.attrs, self.expr_norm(expression))

    def landmark_features(self, feat: torch.Tensor | None = None) -> torch.Tensor:
        if feat is None:
            feat = self.grid_fields()[2]
        return self.sample(feat, self.landmarks)

    def predict_landmarks(self, expression: torch.Tensor, feat: torch.Tensor | None = None) -> torch.Tensor:
        """(L,3) expression-conditioned landmarks for one expression vector (E,)."""
        L = self.landmarks
        return L + self.deform(self.landmark_features(feat), L, self.expr_norm(expression)) + self.basis(L, expression)
