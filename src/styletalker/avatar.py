"""The animatable 3D Gaussian head avatar (paper Sec. 3.2, Eq. 6).

Space: all Gaussians live in *canonical head space* (see docs/FORMATS.md). A video frame is
rendered with ``Camera(K, world_to_cam=head_pose)``, i.e. the tracked head pose is the camera
extrinsic. An expression vector (52 blendshape weights) drives colour, geometry and attributes.

    avatar = GaussianAvatar.load("work/reconstruct/avatar.pt")
    g = avatar(expression)          # GaussianState in canonical space
    out = avatar.render(expression, camera, background=(1, 1, 1))

Two ways of placing the Gaussians (``config["binding"]``):

* **mesh-anchored** (what ``styletalker reconstruct`` builds): every Gaussian belongs to one
  triangle of the stage-1 DMTet surface (``face_id``) at a fixed barycentric point (``bary``).
  For an expression the surface is deformed by the pretrained ``MLP_deform`` (evaluated on the
  mesh vertices, exactly as in stage 1); each triangle gives a local frame (first edge, in-plane
  perpendicular, normal) and a stretch ``k = sqrt(area / canonical area)``. The Gaussian's centre
  is the barycentric point plus ``k R offset``, its rotation ``R q`` and its scales ``k s``
  (``offset``, ``q``, ``s`` are per-Gaussian, learned, in the triangle's frame). So Gaussians move
  and turn with the surface they sit on and cannot drift off it into space, where no camera of
  a monocular video would see them.
* **free** (ablation D1/D2 and avatars of format 1): centre ``xyz + MLP_deform(f, gamma(xyz), beta)``.

Expression range: the avatar keeps the per-channel range of the expressions it was trained on
(``expr_min`` / ``expr_max``, 5th / 95th percentiles ``expr_low`` / ``expr_high`` and the neutral
frame's ``expr_neutral``). With ``config["clamp_expression"]`` every input expression is clamped
to ``[expr_min, expr_max]`` before it reaches the MLPs, which were never trained outside it; the
linear expression basis, a linear model of the face, sees it clamped to that range widened by
``ExpressionBasis.EXTRAPOLATE`` spans (:meth:`GaussianAvatar.basis_input`).
``config["attr_bound"]``: MLP_attr's expression residuals are bounded (``b * tanh``): log-scale by
``b``, opacity logit by ``4 b``, rotation by ``b / 2``; ``0`` turns MLP_attr off (static
attributes), ``None`` leaves it unbounded (format 1 behaviour).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .models import N_EXPR, AttributeField, ColorField, DeformField, ExpressionBasis, ExpressionNorm
from .render.common import quat_multiply, rotmat_to_quat

EXPR_STATS = ("expr_min", "expr_low", "expr_neutral", "expr_high", "expr_max")


@dataclass
class GaussianState:
    means: torch.Tensor  # (N,3)
    quats: torch.Tensor  # (N,4) wxyz
    scales: torch.Tensor  # (N,3) linear
    opacities: torch.Tensor  # (N,)
    colors: torch.Tensor  # (N,3)

    def detach(self) -> "GaussianState":
        return GaussianState(*(getattr(self, f.name).detach() for f in fields(self)))


def triangle_frames(tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,3,3) triangle corners -> rotation (M,3,3) whose columns are the first edge, the in-plane
    perpendicular and the unit normal, and the doubled area (M,)."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    n = torch.linalg.cross(e1, e2)
    area2 = n.norm(dim=-1)
    n = n / area2[:, None].clamp_min(1e-12)
    t1 = e1 / e1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t2 = torch.linalg.cross(n, t1)
    return torch.stack([t1, t2, n], -1), area2


class GaussianAvatar(nn.Module):
    # 4: basis (linear expression basis); 3: expr_norm (the MLPs' expression normalisation);
    # 2: mesh anchor, expression range
    FORMAT_VERSION = 4

    def __init__(
        self,
        xyz: torch.Tensor,
        landmarks: torch.Tensor,
        features: torch.Tensor | None = None,
        feat_dim: int = 32,
        n_expr: int = N_EXPR,
        n_freqs: int = 4,
        hidden: int = 128,
        init_scale: float | torch.Tensor | None = None,
        init_opacity: float = 0.5,
        deform_features: torch.Tensor | None = None,
        deform_hidden: int | None = None,
        binding: dict | None = None,
        attr_bound: float | None = None,
        clamp_expression: bool = False,
    ):
        """``xyz``: (N,3) centres (free placement) or, with ``binding``, ignored except for its
        length. ``binding``: ``{"verts" (V,3), "faces" (F,3), "features" (V,C), "face_id" (N,),
        "bary" (N,3)}`` -- the canonical stage-1 surface with the features that feed MLP_deform,
        and each Gaussian's triangle and barycentric point. ``init_scale``: a number or (N,3)
        linear scales (in the triangle frame when bound)."""
        super().__init__()
        n = xyz.shape[0]
        self.config = dict(feat_dim=feat_dim, n_expr=n_expr, n_freqs=n_freqs, hidden=hidden, n_points=n,
                           attr_bound=attr_bound, clamp_expression=bool(clamp_expression))
        if deform_hidden is not None and deform_hidden != hidden:
            self.config["deform_hidden"] = int(deform_hidden)
        if binding is not None:
            self.config.update(binding=True, n_mesh_verts=int(binding["verts"].shape[0]),
                               n_mesh_faces=int(binding["faces"].shape[0]))
            self.register_buffer("mesh_verts", binding["verts"].detach().clone().float())
            self.register_buffer("mesh_faces", binding["faces"].detach().clone().long())
            self.register_buffer("mesh_features", binding["features"].detach().clone().float())
            self.register_buffer("face_id", binding["face_id"].detach().clone().long())
            self.register_buffer("bary", binding["bary"].detach().clone().float())
            # offset from the barycentric point, in the triangle frame (units of the canonical scene)
            self.offset = nn.Parameter(torch.zeros(n, 3))
        else:
            if deform_features is not None:
                # frozen copy of the features that feed MLP_deform (stage 2 keeps the pretrained
                # deformation while ``features`` are free to change for colour/attributes)
                self.config["deform_features"] = True
                self.register_buffer("deform_features", deform_features.detach().clone().float())
            self.xyz = nn.Parameter(xyz.detach().clone().float())
        if features is None:
            features = 0.1 * torch.randn(n, feat_dim)
        self.features = nn.Parameter(features.detach().clone().float())
        if init_scale is None:
            init_scale = _mean_nn_distance(xyz.detach().float()) * 0.5
        s = torch.as_tensor(init_scale, dtype=torch.float32).clamp_min(1e-6)
        self.log_scales = nn.Parameter(torch.log(s).expand(n, 3).clone() if s.dim() < 2 else torch.log(s).clone())
        q = torch.zeros(n, 4)
        q[:, 0] = 1
        self.quats = nn.Parameter(q)
        p = torch.tensor(init_opacity).clamp(1e-4, 1 - 1e-4)
        self.opacity_logits = nn.Parameter(torch.full((n,), float(torch.log(p / (1 - p)))))
        self.register_buffer("landmarks", landmarks.detach().clone().float())  # (L,3) canonical 3D landmarks
        for name in EXPR_STATS:
            self.register_buffer(name, torch.zeros(n_expr) if name != "expr_max" else torch.ones(n_expr))
        self.deform = DeformField(feat_dim, n_expr, n_freqs, deform_hidden or hidden)
        self.expr_norm = ExpressionNorm(n_expr)
        self.basis = ExpressionBasis(n_expr)
        self.color = ColorField(feat_dim, n_expr, hidden)
        self.attributes = AttributeField(feat_dim, n_expr, hidden)
        self.extra: dict = {}

    @property
    def num_points(self) -> int:
        return self.features.shape[0]

    @property
    def bound(self) -> bool:
        return bool(self.config.get("binding"))

    @property
    def device(self) -> torch.device:
        return self.features.device

    # ---- expressions ---------------------------------------------------------------------
    def set_expression_range(self, expressions: torch.Tensor, neutral: torch.Tensor) -> None:
        """Record the per-channel range of the training expressions (N,E) and the neutral one (E,)."""
        e = expressions.detach().float().to(self.device)
        q = torch.quantile(e, torch.tensor([0.05, 0.95], device=e.device), dim=0)
        for name, v in zip(EXPR_STATS, (e.min(0).values, q[0], neutral.detach().float().to(e.device), q[1],
                                        e.max(0).values)):
            getattr(self, name).copy_(v)
        self.config["expression_range"] = True

    def clamped(self, expression: torch.Tensor, spans: float = 0.0) -> torch.Tensor:
        """The expression clamped, when ``clamp_expression``, to the training range widened by
        ``spans`` training spans (``expr_max - expr_min``) on each side."""
        e = expression.to(self.features)
        if self.config.get("clamp_expression") and self.config.get("expression_range"):
            widen = spans * (self.expr_max - self.expr_min)
            e = torch.minimum(torch.maximum(e, self.expr_min - widen), self.expr_max + widen)
        return e

    def basis_input(self, expression: torch.Tensor) -> torch.Tensor:
        """The expression the linear expression basis sees: :meth:`clamped` to the training range
        widened by :attr:`ExpressionBasis.EXTRAPOLATE <styletalker.models.ExpressionBasis.EXTRAPOLATE>`
        spans. A linear model of the face may go past the expressions the clip showed (a talking
        clip opens the mouth a little, a driver wide) where the MLPs, clamped to the range, may not."""
        return self.clamped(expression, self.basis.EXTRAPOLATE)

    def expression_input(self, expression: torch.Tensor) -> torch.Tensor:
        """The expression the MLPs see: :meth:`clamped`, then normalised by ``expr_norm``
        (:class:`~styletalker.models.ExpressionNorm`, fitted in stage 1 and copied with
        MLP_deform; the identity in avatars saved without it)."""
        return self.expr_norm(self.clamped(expression))

    # ---- Gaussians -------------------------------------------------------------------------
    def deformed_mesh(self, expression: torch.Tensor) -> torch.Tensor:
        """Vertices (V,3) of the anchoring surface deformed to ``expression`` (bound avatars)."""
        return self._surface(self.basis_input(expression), self.expression_input(expression))

    def _surface(self, e_basis: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The anchoring surface's vertices for the expression as the basis sees it (``e_basis``,
        :meth:`basis_input`) and as MLP_deform sees it (``e``, :meth:`expression_input`)."""
        return self.mesh_verts + self.deform(self.mesh_features, self.mesh_verts, e) + self.basis(self.mesh_verts, e_basis)

    def predict_landmarks(self, expression: torch.Tensor, k: int = 4) -> torch.Tensor:
        """(L,3) the canonical landmarks moved to ``expression`` by MLP_deform and the basis (the
        landmark term of Eq. 4 when MLP_deform trains in stage 2); MLP_deform sees at each
        landmark the inverse-distance mean of the features of its ``k`` nearest Gaussians. Free
        placement only (MLP_deform trains in stage 2 only without the stage-1 mesh, D1 / D2)."""
        L = self.landmarks
        with torch.no_grad():
            d, idx = torch.cdist(L, self.xyz).topk(k, largest=False)
            w = 1.0 / d.clamp_min(1e-4)
            w = w / w.sum(1, keepdim=True)
        feat = (w[..., None] * self.features[idx]).sum(1)
        return L + self.deform(feat, L, self.expression_input(expression)) + self.basis(L, self.basis_input(expression))

    def mlp_colors(self, expression: torch.Tensor) -> torch.Tensor:
        """MLP_color of every Gaussian (before an edit's colour residual)."""
        return self.color(self.features, self.expression_input(expression))

    def _attribute_residuals(self, e: torch.Tensor):
        b = self.config.get("attr_bound")
        if b is not None and b <= 0:
            return 0.0, 0.0, 0.0
        d_scale, d_quat, d_op = self.attributes(self.features, e)
        if b is None:
            return d_scale, d_quat, d_op
        return b * torch.tanh(d_scale), 0.5 * b * torch.tanh(d_quat), 4 * b * torch.tanh(d_op)

    def forward(self, expression: torch.Tensor) -> GaussianState:
        e = self.expression_input(expression)
        e_basis = self.basis_input(expression)
        d_scale, d_quat, d_op = self._attribute_residuals(e)
        if self.bound:
            V = self._surface(e_basis, e)
            f = self.mesh_faces[self.face_id]
            tri = V[f]  # (N,3,3)
            R, area2 = triangle_frames(tri)
            with torch.no_grad():
                _, area0 = triangle_frames(self.mesh_verts[f])
            k = (area2 / area0.clamp_min(1e-12)).clamp_min(1e-8).sqrt()[:, None]
            base = (self.bary[..., None] * tri).sum(1)
            means = base + k * (R @ self.offset[..., None])[..., 0]
            q_local = self.quats + d_quat
            quats = quat_multiply(rotmat_to_quat(R), q_local / q_local.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            scales = torch.exp(self.log_scales + d_scale) * k
        else:
            fd = getattr(self, "deform_features", None)
            if fd is None or fd.shape != self.features.shape:
                fd = self.features
            means = self.xyz + self.deform(fd, self.xyz, e) + self.basis(self.xyz, e_basis)
            scales = torch.exp(self.log_scales + d_scale)
            quats = self.quats + d_quat
        opacities = torch.sigmoid(self.opacity_logits + d_op)
        colors = self.color(self.features, e)
        off = getattr(self, "color_offset", None)
        if off is not None:  # per-Gaussian colour residual of text edits (logit space)
            colors = torch.sigmoid(torch.logit(colors.clamp(1e-6, 1 - 1e-6)) + off)
        return GaussianState(means, quats, scales, opacities, colors)

    def enable_color_offset(self) -> nn.Parameter:
        """Add (once) a per-Gaussian colour residual ``color_offset`` (N,3), zero = no change,
        applied in logit space after MLP_color. Used by ``styletalker edit`` to change colours
        locally without touching geometry; saved and loaded with the avatar."""
        if getattr(self, "color_offset", None) is None:
            self.color_offset = nn.Parameter(torch.zeros(self.num_points, 3, device=self.device))
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
        from .workdir import save_torch

        save_torch(path, {"format": "styletalker-avatar", "version": self.FORMAT_VERSION, "config": self.config,
                          "state_dict": self.state_dict(), "extra": extra})

    @classmethod
    def from_state(cls, config: dict, state_dict: dict) -> "GaussianAvatar":
        """Rebuild an avatar from its ``config`` and ``state_dict`` (as saved or checkpointed)."""
        cfg = dict(config)
        n = int(cfg["n_points"])
        sd = state_dict
        binding = None
        if cfg.get("binding"):
            binding = {k: torch.zeros_like(sd[f"{p}{k}"]) if f"{p}{k}" in sd else None
                       for p, k in (("mesh_", "verts"), ("mesh_", "faces"), ("mesh_", "features"), ("", "face_id"),
                                    ("", "bary"))}
        fd = torch.zeros(n, cfg["feat_dim"]) if cfg.get("deform_features") else None
        av = cls(torch.zeros(n, 3), sd["landmarks"], feat_dim=cfg["feat_dim"], n_expr=cfg["n_expr"],
                 n_freqs=cfg["n_freqs"], hidden=cfg["hidden"], init_scale=0.01, deform_features=fd,
                 deform_hidden=cfg.get("deform_hidden"), binding=binding, attr_bound=cfg.get("attr_bound"),
                 clamp_expression=bool(cfg.get("clamp_expression")))
        if cfg.get("color_offset") or "color_offset" in sd:
            av.enable_color_offset()
        res = av.load_state_dict(sd, strict=False)
        missing = [k for k in res.missing_keys if k not in EXPR_STATS]  # format 1 has no expression range
        if missing or res.unexpected_keys:
            raise RuntimeError(f"state does not match the avatar: missing {missing[:5]}, "
                               f"unexpected {res.unexpected_keys[:5]}")
        if cfg.get("expression_range"):
            av.config["expression_range"] = True
        return av

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> "GaussianAvatar":
        from .errors import InputError
        from .safeload import check, load_torch, reading

        path = Path(path)
        what = "StyleTalker avatar"
        blob = load_torch(path, f"{what} file", map_location=map_location)
        if not isinstance(blob, dict) or blob.get("format") != "styletalker-avatar":
            raise InputError(f"{path}: not a StyleTalker avatar file")
        with reading(path, what):
            sd, extra = blob["state_dict"], blob.get("extra", {})
            check(isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())
                  and isinstance(extra, dict), path, what, "state_dict or extra of the wrong type")
            _check_config(blob["config"], sd, path)  # before anything the config sizes is allocated
            av = cls.from_state(blob["config"], sd)
        av.extra = extra
        return av


MAX_WIDTH = 4096  # bound of the config's layer widths and counts that are not sizes of stored tensors


def _check_config(cfg, sd: dict, path) -> None:
    """What :meth:`GaussianAvatar.from_state` allocates from ``cfg`` before it loads ``sd`` must be
    consistent with the tensors really stored: the Gaussian count with their features, the
    widths bounded (a damaged or hostile file must not make it allocate terabytes)."""
    from .safeload import check

    what = "StyleTalker avatar"
    check(isinstance(cfg, dict), path, what, "config is not a dict")
    feats = sd["features"]
    check(feats.ndim == 2 and int(cfg["n_points"]) == feats.shape[0] and int(cfg["feat_dim"]) == feats.shape[1],
          path, what, f"config n_points / feat_dim {cfg['n_points']} / {cfg['feat_dim']} do not match the stored "
          f"features {tuple(feats.shape)}")
    hidden = cfg["hidden"]
    widths = [cfg["n_expr"], cfg["n_freqs"], cfg.get("deform_hidden") or 1,
              *(hidden if isinstance(hidden, (list, tuple)) else [hidden])]
    check(all(0 < int(w) <= MAX_WIDTH for w in widths), path, what,
          f"config widths {widths} are not in 1..{MAX_WIDTH}")
    anchors, matrix = sd.get("basis.anchors"), sd.get("basis.matrix")
    if anchors is not None or matrix is not None:
        ok = anchors is not None and matrix is not None and anchors.ndim == 2 and anchors.shape[1] == 3
        check(ok and tuple(matrix.shape) == (int(cfg["n_expr"]), anchors.shape[0], 3), path, what,
              "basis.anchors / basis.matrix do not match each other or n_expr")


class AvatarExtra:
    """Typed view of an avatar file's ``extra`` dict (every key: docs/FORMATS.md, ``avatar.pt``).

    Written by reconstruct (:meth:`for_reconstruction`), extended by edits (``edit``,
    ``background``) and by bare exports (``camera``, ``styletalker.animate.camera_extra``).
    """

    def __init__(self, extra: dict | None = None):
        self.raw: dict = dict(extra or {})

    @classmethod
    def of(cls, avatar) -> "AvatarExtra":
        """The extra of ``avatar`` (a :class:`GaussianAvatar`, or None: empty)."""
        return cls(getattr(avatar, "extra", None) if avatar is not None else None)

    @staticmethod
    def for_reconstruction(data: dict, neutral_index: int, y_cut: float, preset: str) -> dict:
        """What reconstruct stores: the data options (``data``, and the same keys at the top level
        as format-1 readers expect), the neutral frame's row, the head cut plane, the preset."""
        from .reconstruct.data import DATA_KEYS

        d = {k: (list(data[k]) if k == "background" else data[k]) for k in DATA_KEYS}
        return {"data": d, **d, "neutral_index": int(neutral_index), "y_cut": float(y_cut), "preset": preset}

    @property
    def data(self) -> dict:
        """The data options reconstruction used (``size``, ``max_frames``, ``holdout_every``,
        ``cut_margin``, ``background``); {} when the file does not record them."""
        from .reconstruct.data import DATA_KEYS

        d = self.raw.get("data")
        return {k: v for k, v in d.items() if k in DATA_KEYS} if isinstance(d, dict) else {}

    @property
    def background(self) -> tuple[float, float, float] | None:
        bg = self.raw.get("background")
        if bg is None:
            bg = self.data.get("background")
        return None if bg is None else tuple(float(x) for x in bg)

    @property
    def neutral_index(self) -> int | None:
        v = self.raw.get("neutral_index")
        return None if v is None else int(v)

    @property
    def y_cut(self) -> float | None:
        v = self.raw.get("y_cut")
        return None if v is None else float(v)

    @property
    def preset(self) -> str | None:
        return self.raw.get("preset")

    @property
    def edit(self) -> dict | None:
        """Edits only: ``{"prompt", "name", "editor"}``."""
        e = self.raw.get("edit")
        return e if isinstance(e, dict) else None

    @property
    def camera(self) -> dict | None:
        """Bare exports only: ``{"K", "width", "height", "ref_pose", "neutral_expression"}``."""
        c = self.raw.get("camera")
        return c if isinstance(c, dict) else None


def _mean_nn_distance(x: torch.Tensor, sample: int = 2048) -> float:
    if x.shape[0] < 2:
        return 0.01
    idx = torch.randperm(x.shape[0])[:sample]
    d = torch.cdist(x[idx], x)
    d[torch.arange(len(idx)), idx] = float("inf")
    return float(d.min(dim=1).values.mean().clamp_min(1e-4))


class _FirstLayerCached:
    """An expression-conditioned MLP (:func:`models._mlp_with_expr`) on fixed per-point inputs,
    with the per-point share of its first layer computed once: per call only ``W_e @ beta``
    is added before the remaining layers. Same arithmetic as the uncached call, so the same result."""

    def __init__(self, net: nn.Sequential, per_point: torch.Tensor):
        first = net[0]
        d = per_point.shape[-1]
        self.h1 = F.linear(per_point, first.weight[:, :d], first.bias)
        self.w_expr = first.weight[:, d:]
        self.rest = list(net[1:])

    def __call__(self, e: torch.Tensor) -> torch.Tensor:
        h = self.h1 + F.linear(e.unsqueeze(0), self.w_expr)
        for m in self.rest:
            h = F.silu(h, inplace=True) if isinstance(m, nn.SiLU) else m(h)
        return h


class FrozenAvatar:
    """A fixed avatar evaluated without gradients, faster: the work that does not depend on the
    expression is done once -- the per-Gaussian (and, for ``MLP_deform``, per-vertex) share of
    every MLP's first layer, the Gaussians' triangles, the canonical triangle areas -- and the
    triangle frames / stretches / rotations are computed per used triangle rather than per
    Gaussian. The Gaussians are those of :meth:`GaussianAvatar.forward` (same operations on the
    same numbers; tests/test_avatar.py). A snapshot: later changes to the avatar's parameters
    are not seen (make a new one). ``AvatarScene.render`` and live driving use it."""

    MEMO = 4  # the Gaussians of the last few expressions are kept (see :meth:`__call__`)

    def __init__(self, avatar: "GaussianAvatar"):
        import threading

        from .models import posenc

        self.avatar = avatar
        self._memo: dict = {}
        self._memo_lock = threading.Lock()
        a = avatar
        with torch.no_grad():
            self.color = _FirstLayerCached(a.color.net, a.features)
            b = a.config.get("attr_bound")
            self.attr = None if (b is not None and b <= 0) else _FirstLayerCached(a.attributes.net, a.features)
            self.opacity_logits, self.log_scales, self.quats = a.opacity_logits, a.log_scales, a.quats
            self.color_offset = getattr(a, "color_offset", None)
            if a.bound:
                pts = a.mesh_verts
                self.deform = _FirstLayerCached(a.deform.net, torch.cat([a.mesh_features, posenc(pts, a.deform.n_freqs)], -1))
                self.basis_weights = a.basis.weights(pts) if a.basis.fitted else None
                used, inv = torch.unique(a.face_id, return_inverse=True)
                self.face_verts = a.mesh_faces[used]  # (U,3) the triangles that carry Gaussians
                self.inv = inv  # (N,) each Gaussian's row in face_verts
                self.gauss_verts = a.mesh_faces[a.face_id]  # (N,3)
                _, self.area0 = triangle_frames(a.mesh_verts[self.face_verts])
                self.bary, self.offset = a.bary, a.offset
            else:
                fd = getattr(a, "deform_features", None)
                if fd is None or fd.shape != a.features.shape:
                    fd = a.features
                self.xyz = a.xyz
                self.deform = _FirstLayerCached(a.deform.net, torch.cat([fd, posenc(a.xyz, a.deform.n_freqs)], -1))
                self.basis_weights = a.basis.weights(a.xyz) if a.basis.fitted else None

    @property
    def num_points(self) -> int:
        return self.avatar.num_points

    def _attribute_residuals(self, e: torch.Tensor):
        if self.attr is None:
            return 0.0, 0.0, 0.0
        out = self.attr(e)
        d_scale, d_quat, d_op = out[:, :3], out[:, 3:7], out[:, 7]
        b = self.avatar.config.get("attr_bound")
        if b is None:
            return d_scale, d_quat, d_op
        return b * torch.tanh(d_scale), 0.5 * b * torch.tanh(d_quat), 4 * b * torch.tanh(d_op)

    def __call__(self, expression: torch.Tensor) -> GaussianState:
        """The Gaussians at ``expression``. The results of the last :data:`MEMO` expressions are
        kept, so live driving can compute a frame's Gaussians on one thread while the previous
        frame is rasterized on another (styletalker.live); treat them as read-only."""
        key = torch.as_tensor(expression).detach().float().cpu().numpy().tobytes()
        with self._memo_lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        g = self._gaussians(expression)
        with self._memo_lock:
            self._memo[key] = g
            while len(self._memo) > self.MEMO:
                self._memo.pop(next(iter(self._memo)))
        return g

    @torch.no_grad()
    def _gaussians(self, expression: torch.Tensor) -> GaussianState:
        a = self.avatar
        e = a.expression_input(expression)
        d_scale, d_quat, d_op = self._attribute_residuals(e)
        move = 0.0 if self.basis_weights is None else a.basis.displacement(self.basis_weights, a.basis_input(expression))
        if a.bound:
            V = a.mesh_verts + self.deform(e) + move
            R, area2 = triangle_frames(V[self.face_verts])  # per used triangle
            k = (area2 / self.area0.clamp_min(1e-12)).clamp_min(1e-8).sqrt()[:, None]
            qR = rotmat_to_quat(R)
            inv = self.inv
            Rg, kg = R[inv], k[inv]
            base = (self.bary[..., None] * V[self.gauss_verts]).sum(1)
            means = base + kg * (Rg @ self.offset[..., None])[..., 0]
            q_local = self.quats + d_quat
            quats = quat_multiply(qR[inv], q_local / q_local.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            scales = torch.exp(self.log_scales + d_scale) * kg
        else:
            means = self.xyz + self.deform(e) + move
            scales = torch.exp(self.log_scales + d_scale)
            quats = self.quats + d_quat
        opacities = torch.sigmoid(self.opacity_logits + d_op)
        colors = torch.sigmoid(self.color(e))
        if self.color_offset is not None:
            colors = torch.sigmoid(torch.logit(colors.clamp(1e-6, 1 - 1e-6)) + self.color_offset)
        return GaussianState(means, quats, scales, opacities, colors)

    def render(self, expression, camera, background=None, backend: str = "auto"):
        from .render import render

        g = self(expression)
        return render(g.means, g.quats, g.scales, g.opacities, g.colors, camera, background, backend)
