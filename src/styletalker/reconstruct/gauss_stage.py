"""Stage 2 (paper Sec. 3.2, "diffusion-guided color pre-training"): the 3D Gaussian head.

Initialisation (paper): Gaussians at the vertices of the stage-1 mesh, with the per-vertex DMTet
features ``f`` (interpolated from the grid by marching tetrahedra); optionally more points
sampled on the mesh faces (features interpolated barycentrically) to reach a target count.
MLP_color and MLP_attributes start from scratch; MLP_deform is copied from stage 1 and kept
(frozen, together with a frozen copy of the features that feed it, ``deform_features``), so the
learned expression deformation is preserved while colours/attributes/features train.

Ablations (paper Table 5): ``init="sphere"`` (D1: Gaussians on the initial unit sphere, random
features, MLP_deform from scratch and trained) and ``retrain_deform`` (D2: mesh initialisation but
MLP_deform re-initialised and trained). When MLP_deform trains, the landmark term L_def of Eq. 4 is
used with landmark features taken from the nearest Gaussians.

Training data: the training frames plus the multi-view prior views (neutral expression); each
iteration draws a prior view with probability ``prior_prob``. Loss per image (Eq. 4 terms that
apply): 0.1 L1 + 0.1 (1 - IoU) + w_dssim (1 - SSIM), all inside the valid head region; plus the
scale regulariser (``w_scale``: hinge on log-scales above ``max_scale``) and the opacity
regulariser (``w_opacity``: binary entropy of the opacities, :func:`opacity_entropy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..avatar import GaussianAvatar
from ..metrics import ssim_torch
from .data import ReconData, colour_targets, cut_plane_valid, edge_band, mouth_masks
from .density import DensifyConfig
from .mesh_stage import masked_l1, soft_iou_loss


@dataclass
class GaussTrainConfig:
    iters: int = 1500
    batch: int = 1
    lr_xyz: float = 2e-4
    lr_features: float = 5e-3
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 2e-2
    lr_mlp: float = 1e-3
    lr_deform: float = 1e-3
    train_deform: bool = False
    prior_prob: float = 0.25
    w_rgb: float = 0.1
    w_sil: float = 0.1
    w_dssim: float = 0.025
    w_def: float = 1.0
    max_scale: float = 0.1  # dm; larger Gaussians are penalised (w_scale)
    w_scale: float = 0.1  # scale regulariser: hinge on log-scales above max_scale (0: off)
    # opacity regulariser: binary entropy of each Gaussian's opacity, pushing it to 0 or 1 (no
    # semi-transparent haze; one pushed to 0 is pruned by densification). 0: off
    w_opacity: float = 0.0
    w_offset: float = 1.0  # mesh-anchored: penalty on offsets from the surface beyond max_offset
    max_offset: float = 0.03  # dm
    # extra weight of the mouth (outer lip line, filled, from the tracked landmarks) in the colour
    # loss of video frames: the mouth is ~1 % of a frame (docs/reconstruct.md: it helps with
    # model.expr_normalize, alone it does not)
    w_mouth: float = 10.0
    densify: DensifyConfig = field(default_factory=DensifyConfig)


def _fibonacci_sphere(n: int) -> torch.Tensor:
    """n nearly evenly spread unit vectors."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    y = 1 - 2 * k / n
    r = torch.sqrt((1 - y * y).clamp_min(0))
    theta = math.pi * (3 - 5**0.5) * k
    return torch.stack([torch.cos(theta) * r, y, torch.sin(theta) * r], -1).float()


def sample_surface(verts: torch.Tensor, faces: torch.Tensor, feats: torch.Tensor, n: int, gen: torch.Generator):
    """n points sampled uniformly on the mesh surface with barycentrically interpolated features."""
    v = verts[faces]
    area = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]).norm(dim=-1)
    fi = torch.multinomial(area / area.sum(), n, replacement=True, generator=gen)
    r1 = torch.rand(n, generator=gen).sqrt()
    r2 = torch.rand(n, generator=gen)
    b = torch.stack([1 - r1, r1 * (1 - r2), r1 * r2], -1)
    pts = (b[..., None] * v[fi]).sum(1)
    f = (b[..., None] * feats[faces[fi]]).sum(1)
    return pts, f


def sample_faces(verts: torch.Tensor, faces: torch.Tensor, n: int, gen: torch.Generator):
    """``n`` points spread over the mesh in proportion to triangle area: every triangle gets the
    whole part of its share, the fractions are drawn at random (so no region is left empty by
    chance). Returns (face index (n,), barycentric coordinates (n,3))."""
    v = verts[faces]
    area = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]).norm(dim=-1).double()
    share = area / area.sum() * n
    whole = share.floor().long()
    rest = n - int(whole.sum())
    fid = torch.repeat_interleave(torch.arange(faces.shape[0]), whole)
    if rest > 0:
        extra = torch.multinomial((share - whole).float().clamp_min(0) + 1e-12, rest, replacement=False, generator=gen)
        fid = torch.cat([fid, extra])
    r1 = torch.rand(n, generator=gen).sqrt()
    r2 = torch.rand(n, generator=gen)
    bary = torch.stack([1 - r1, r1 * (1 - r2), r1 * r2], -1)
    return fid, bary


def init_from_mesh(mesh_model, n_points: int | None, hidden: int, seed: int = 0, retrain_deform: bool = False,
                   init_opacity: float = 0.8, anchor: str = "mesh", attr_bound: float | None = None,
                   clamp_expression: bool = False, thickness: float = 0.3) -> GaussianAvatar:
    """Gaussians on the stage-1 surface with its features (paper: initialised from the mesh).

    ``anchor="mesh"``: ``n_points`` Gaussians bound to the triangles (see :mod:`styletalker.avatar`),
    flat discs in the triangle plane (normal scale ``thickness`` x the in-plane scale), MLP_deform
    copied from stage 1. ``anchor="free"``: free centres at the mesh vertices plus surface samples.
    """
    cfg = mesh_model.config
    with torch.no_grad():
        m = mesh_model.extract()
        verts, feats, faces = m.verts.detach(), m.attrs.detach(), m.faces
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    common = dict(feat_dim=cfg["feat_dim"], n_expr=cfg["n_expr"], n_freqs=cfg["n_freqs"], hidden=hidden,
                  init_opacity=init_opacity, deform_hidden=cfg["hidden"], attr_bound=attr_bound,
                  clamp_expression=clamp_expression)
    if anchor == "mesh":
        if retrain_deform:
            raise ValueError("mesh-anchored Gaussians keep the stage-1 MLP_deform (use anchor='free' for D2)")
        n = int(n_points or verts.shape[0])
        fid, bary = sample_faces(verts, faces, n, g)
        f = (bary[..., None] * feats[faces[fid]]).sum(1)
        v = verts[faces]
        total = float(torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]).norm(dim=-1).sum() / 2)
        s = (total / n) ** 0.5 * 0.7
        scale = torch.tensor([s, s, s * thickness])
        av = GaussianAvatar(torch.zeros(n, 3), mesh_model.landmarks.detach(), features=f, init_scale=scale,
                            binding={"verts": verts, "faces": faces, "features": feats, "face_id": fid, "bary": bary},
                            **common)
    elif anchor == "free":
        if n_points and n_points > verts.shape[0]:
            p, f = sample_surface(verts, faces, feats, n_points - verts.shape[0], g)
            verts, feats = torch.cat([verts, p]), torch.cat([feats, f])
        av = GaussianAvatar(verts, mesh_model.landmarks.detach(), features=feats, init_scale=_nn_distance(verts),
                            deform_features=None if retrain_deform else feats, **common)
    else:
        raise ValueError(f"unknown anchor {anchor!r}")
    av.expr_norm.load_state_dict(mesh_model.expr_norm.state_dict())
    av.basis.load_state_dict(mesh_model.basis.state_dict())
    if not retrain_deform:
        av.deform.load_state_dict(mesh_model.deform.state_dict())
    return av


def init_from_sphere(center, radius: float, landmarks: torch.Tensor, n_points: int, feat_dim: int, n_expr: int,
                     n_freqs: int, hidden: int, seed: int = 0, init_opacity: float = 0.8,
                     attr_bound: float | None = None, clamp_expression: bool = False) -> GaussianAvatar:
    torch.manual_seed(seed)
    pts = _fibonacci_sphere(n_points) * radius + torch.as_tensor(center, dtype=torch.float32)
    return GaussianAvatar(pts, landmarks, features=0.01 * torch.randn(n_points, feat_dim), feat_dim=feat_dim,
                          n_expr=n_expr, n_freqs=n_freqs, hidden=hidden, init_scale=_nn_distance(pts),
                          init_opacity=init_opacity, attr_bound=attr_bound, clamp_expression=clamp_expression)


def _nn_distance(x: torch.Tensor, sample: int = 4096) -> float:
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:sample]
    d = torch.cdist(x[idx], x)
    d[torch.arange(len(idx)), idx] = float("inf")
    return float(d.min(dim=1).values.mean().clamp_min(1e-4))


def make_optimizer(av: GaussianAvatar, cfg: GaussTrainConfig) -> torch.optim.Adam:
    groups = [
        {"params": [av.offset if av.bound else av.xyz], "lr": cfg.lr_xyz, "name": "xyz"},
        {"params": [av.features], "lr": cfg.lr_features, "name": "features"},
        {"params": [av.log_scales], "lr": cfg.lr_scales, "name": "scales"},
        {"params": [av.quats], "lr": cfg.lr_quats, "name": "quats"},
        {"params": [av.opacity_logits], "lr": cfg.lr_opacity, "name": "opacity"},
        {"params": list(av.color.parameters()) + list(av.attributes.parameters()), "lr": cfg.lr_mlp, "name": "mlp"},
    ]
    for p in av.deform.parameters():
        p.requires_grad_(cfg.train_deform)
    if cfg.train_deform:
        groups.append({"params": list(av.deform.parameters()), "lr": cfg.lr_deform, "name": "deform"})
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)


@dataclass
class Sample:
    target: torch.Tensor
    head: torch.Tensor
    valid: torch.Tensor
    K: torch.Tensor
    world_to_cam: torch.Tensor
    expression: torch.Tensor
    landmarks: torch.Tensor | None  # tracked 3D landmarks (video frames only)
    rgb_weight: torch.Tensor  # (H,W,1) per-pixel weight of the colour loss


class SampleSource:
    """Training frames and prior views as one sampling pool.

    The video frames' colours and where they count are :func:`.data.colour_targets` (a band of
    ``edge_px`` pixels on each side of the head mask's outline left out, since the mask's edge
    mixes hair and ears with the backdrop, and with ``unmix`` the backdrop's colour taken out of
    the outline; the silhouette loss still sees it all); the mouth of video frames weighs
    ``1 + w_mouth`` (:func:`.data.mouth_masks`), prior-view pixels the prior's confidence where
    it gives one.
    """

    def __init__(self, data: ReconData, views=None, prior_prob: float = 0.25, edge_px: int = 0, w_mouth: float = 0.0,
                 unmix: bool = False):
        self.data = data
        self.edge_px = int(edge_px)
        images, trusted = colour_targets(data, edge_px, unmix)
        bg = torch.tensor(data.background, dtype=images.dtype, device=images.device)
        self.target = data.target if images is data.images else images * data.head + bg * (1 - data.head)
        self.rgb_weight = data.valid * trusted
        if w_mouth > 0:
            self.rgb_weight = self.rgb_weight * (1 + w_mouth * mouth_masks(data))
        self.views = views if views is not None and len(views) > 0 else None
        self.prior_prob = prior_prob if self.views is not None else 0.0
        if self.views is not None:
            v = self.views
            dev = data.images.device
            bg = torch.tensor(data.background)
            valid = cut_plane_valid(v.K.cpu(), v.world_to_cam.cpu(), data.y_cut, data.width, data.height,
                                    float(data.landmarks3d[:, 152, 2].median()))
            m = v.masks.cpu() * valid
            self.prior_valid = valid.to(dev)
            self.prior_target = (v.images.cpu() * m + bg * (1 - m)).to(dev)
            self.prior_head = m.to(dev)
            self.prior_K, self.prior_w2c = v.K.to(dev), v.world_to_cam.to(dev)
            self.prior_expr = v.expression.to(dev)
            w = m.new_ones(m.shape) if getattr(v, "weights", None) is None else v.weights.cpu()
            self.prior_rgb_weight = (valid * w * (1 - edge_band(m, self.edge_px))).to(dev)

    def draw(self, gen: torch.Generator) -> Sample:
        d = self.data
        if self.views is not None and float(torch.rand((), generator=gen)) < self.prior_prob:
            k = int(torch.randint(len(self.views), (), generator=gen))
            return Sample(self.prior_target[k], self.prior_head[k], self.prior_valid[k], self.prior_K[k],
                          self.prior_w2c[k], self.prior_expr, None, self.prior_rgb_weight[k])
        i = int(d.train_idx[int(torch.randint(len(d.train_idx), (), generator=gen))])
        return Sample(self.target[i], d.head[i], d.valid[i], d.K[i], d.world_to_cam[i], d.expression[i],
                      d.landmarks3d[i], self.rgb_weight[i])


def gauss_losses(av: GaussianAvatar, samples: list[Sample], data: ReconData, cfg: GaussTrainConfig) -> dict:
    from ..render import Camera, render

    bg = torch.tensor(data.background, dtype=torch.float32, device=av.device)
    l_rgb = l_sil = l_ssim = l_def = 0.0
    n_def = 0
    for s in samples:
        cam = Camera(s.K, s.world_to_cam, data.width, data.height)
        g = av(s.expression)
        out = render(g.means, g.quats, g.scales, g.opacities, g.colors, cam, bg)
        l_rgb = l_rgb + masked_l1(out.image, s.target, s.rgb_weight)
        l_sil = l_sil + soft_iou_loss(out.alpha, s.head, s.valid)
        if cfg.w_dssim > 0 and s.landmarks is not None:  # video frames only (prior views: weighted L1)
            img = out.image * s.valid + bg * (1 - s.valid)
            l_ssim = l_ssim + (1 - ssim_torch(img, s.target))
        if cfg.train_deform and s.landmarks is not None:
            l_def = l_def + (av.predict_landmarks(s.expression) - s.landmarks).norm(dim=-1).mean()
            n_def += 1
    n = len(samples)
    l_rgb, l_sil, l_ssim = l_rgb / n, l_sil / n, l_ssim / n
    if n_def:
        l_def = l_def / n_def
    big = torch.relu(av.log_scales - math.log(cfg.max_scale)).mean()
    total = cfg.w_rgb * l_rgb + cfg.w_sil * l_sil + cfg.w_dssim * l_ssim + cfg.w_def * l_def + cfg.w_scale * big
    if av.bound and cfg.w_offset > 0:
        total = total + cfg.w_offset * torch.relu(av.offset.norm(dim=-1) - cfg.max_offset).mean()
    l_op = opacity_entropy(av.opacity_logits) if cfg.w_opacity > 0 else 0.0
    total = total + cfg.w_opacity * l_op
    return {"total": total, "rgb": l_rgb, "sil": l_sil, "dssim": l_ssim, "def": l_def, "scale": big, "opacity": l_op}


def opacity_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy (nats) of the opacities ``sigmoid(logits)``: ln 2 at 0.5, 0 at 0 or 1."""
    o = torch.sigmoid(logits)
    # -o log o - (1 - o) log(1 - o), written with logsigmoid so it stays finite at o = 0 or 1
    return -(o * torch.nn.functional.logsigmoid(logits) + (1 - o) * torch.nn.functional.logsigmoid(-logits)).mean()
