"""The animatable 3D Gaussian head avatar (paper Sec. 3.2, Eq. 6).

Space: all Gaussians live in *canonical head space* (see docs/FORMATS.md). A video frame is
rendered with ``Camera(K, world_to_cam=head_pose)``, i.e. the tracked head pose is the camera
extrinsic. An expression vector (52 blendshape weights) drives colour, geometry and attributes.

    avatar = GaussianAvatar.load("work/reconstruct/avatar.pt")
    g = avatar(expression)          # GaussianState in canonical space
    out = avatar.render(expression, camera, background=(1, 1, 1))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from .models import N_EXPR, AttributeField, ColorField, DeformField


@dataclass
class GaussianState:
    means: torch.Tensor  # (N,3)
    quats: torch.Tensor  # (N,4) wxyz
    scales: torch.Tensor  # (N,3) linear
    opacities: torch.Tensor  # (N,)
    colors: torch.Tensor  # (N,3)

    def detach(self) -> "GaussianState":
        return GaussianState(*(getattr(self, f.name).detach() for f in fields(self)))


class GaussianAvatar(nn.Module):
    FORMAT_VERSION = 1

    def __init__(
        self,
        xyz: torch.Tensor,
        landmarks: torch.Tensor,
        features: torch.Tensor | None = None,
        feat_dim: int = 32,
        n_expr: int = N_EXPR,
        n_freqs: int = 4,
        hidden: int = 128,
        init_scale: float | None = None,
        init_opacity: float = 0.5,
        deform_features: torch.Tensor | None = None,
    ):
        super().__init__()
        n = xyz.shape[0]
        self.config = dict(feat_dim=feat_dim, n_expr=n_expr, n_freqs=n_freqs, hidden=hidden, n_points=n)
        if deform_features is not None:
            # optional frozen copy of the features that feed MLP_deform (reconstruction stage 2
            # keeps the pretrained deformation: MLP_deform and its inputs stay as trained on the
            # mesh while `features` are free to change for colour/attributes)
            self.config["deform_features"] = True
            self.register_buffer("deform_features", deform_features.detach().clone().float())
        self.xyz = nn.Parameter(xyz.detach().clone().float())
        if features is None:
            features = 0.1 * torch.randn(n, feat_dim)
        self.features = nn.Parameter(features.detach().clone().float())
        if init_scale is None:
            init_scale = _mean_nn_distance(self.xyz.detach()) * 0.5
        self.log_scales = nn.Parameter(torch.full((n, 3), float(torch.log(torch.tensor(init_scale)))))
        q = torch.zeros(n, 4)
        q[:, 0] = 1
        self.quats = nn.Parameter(q)
        p = torch.tensor(init_opacity).clamp(1e-4, 1 - 1e-4)
        self.opacity_logits = nn.Parameter(torch.full((n,), float(torch.log(p / (1 - p)))))
        self.register_buffer("landmarks", landmarks.detach().clone().float())  # (L,3) canonical 3D landmarks
        self.deform = DeformField(feat_dim, n_expr, n_freqs, hidden)
        self.color = ColorField(feat_dim, n_expr, hidden)
        self.attributes = AttributeField(feat_dim, n_expr, hidden)

    @property
    def num_points(self) -> int:
        return self.xyz.shape[0]

    def forward(self, expression: torch.Tensor) -> GaussianState:
        expression = expression.to(self.xyz)
        f = self.features
        fd = getattr(self, "deform_features", None)
        if fd is None or fd.shape != f.shape:
            fd = f
        means = self.xyz + self.deform(fd, self.xyz, expression)
        d_scale, d_quat, d_op = self.attributes(f, expression)
        scales = torch.exp(self.log_scales + d_scale)
        quats = self.quats + d_quat
        opacities = torch.sigmoid(self.opacity_logits + d_op)
        colors = self.color(f, expression)
        off = getattr(self, "color_offset", None)
        if off is not None:  # per-Gaussian colour residual of text edits (logit space)
            colors = torch.sigmoid(torch.logit(colors.clamp(1e-6, 1 - 1e-6)) + off)
        return GaussianState(means, quats, scales, opacities, colors)

    def enable_color_offset(self) -> nn.Parameter:
        """Add (once) a per-Gaussian colour residual ``color_offset`` (N,3), zero = no change,
        applied in logit space after MLP_color. Used by ``styletalker edit`` to change colours
        locally without touching geometry; saved and loaded with the avatar."""
        if getattr(self, "color_offset", None) is None:
            self.color_offset = nn.Parameter(torch.zeros(self.num_points, 3, device=self.xyz.device))
            self.config["color_offset"] = True
        return self.color_offset

    def render(self, expression, camera, background=None, backend: str = "auto"):
        from .render import render

        g = self(expression)
        return render(g.means, g.quats, g.scales, g.opacities, g.colors, camera, background, backend)

    def landmark_distance(self, expression: torch.Tensor | None = None) -> torch.Tensor:
        """Distance d of every Gaussian (neutral expression by default) to its nearest 3D landmark."""
        if expression is None:
            expression = torch.zeros(self.config["n_expr"])
        with torch.no_grad():
            means = self(expression).means
            return torch.cdist(means, self.landmarks).min(dim=1).values

    # ---- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike, **extra) -> None:
        from .workdir import atomic_path

        blob = {"format": "styletalker-avatar", "version": self.FORMAT_VERSION, "config": self.config,
                "state_dict": self.state_dict(), "extra": extra}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> "GaussianAvatar":
        from .errors import InputError

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: avatar file not found")
        try:
            blob = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:
            raise InputError(f"{path}: not a readable StyleTalker avatar ({e})") from None
        if not isinstance(blob, dict) or blob.get("format") != "styletalker-avatar":
            raise InputError(f"{path}: not a StyleTalker avatar file")
        cfg = dict(blob["config"])
        sd = blob["state_dict"]
        n = cfg.pop("n_points")
        fd = torch.zeros(n, cfg["feat_dim"]) if cfg.get("deform_features") else None
        av = cls(torch.zeros(n, 3), sd["landmarks"], feat_dim=cfg["feat_dim"], n_expr=cfg["n_expr"],
                 n_freqs=cfg["n_freqs"], hidden=cfg["hidden"], init_scale=0.01, deform_features=fd)
        if cfg.get("color_offset") or "color_offset" in sd:
            av.enable_color_offset()
        av.load_state_dict(sd)
        av.extra = blob.get("extra", {})
        return av


def _mean_nn_distance(x: torch.Tensor, sample: int = 2048) -> float:
    if x.shape[0] < 2:
        return 0.01
    idx = torch.randperm(x.shape[0])[:sample]
    d = torch.cdist(x[idx], x)
    d[torch.arange(len(idx)), idx] = float("inf")
    return float(d.min(dim=1).values.mean().clamp_min(1e-4))
