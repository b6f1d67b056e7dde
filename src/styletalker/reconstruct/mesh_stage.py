"""Stage 1 training loop: DMTet head fitted to the video (paper Eq. 4 / 5).

    L = 0.1 L_RGB + 1 L_def + 0.1 L_sil + 0.01 L_lmk   (+ regularisers below)

* L_RGB: mean absolute error between the rendered mesh (composited on the background) and the
  target frame inside the valid head region (see :mod:`.data`).
* L_def: mean Euclidean distance between the predicted expression-conditioned landmarks and the
  tracked per-frame 3D landmarks (decimetres).
* L_sil: 1 - soft IoU between the rendered coverage and the head mask.
* L_lmk: mean |SDF| at the (learnable) neutral landmarks, which keeps them on the surface.

Additions (docs/reconstruct.md): |MLP_deform|^2 at the neutral expression (``w_offset``) and at
the frame's expression (``w_offset_frame``, as Gaussian-Head-Avatar), MLP_deform frozen for the
first ``deform_warmup`` of the iterations; the symmetry term (``w_sym``); the face-surface term
(``w_face``, :func:`face_surface_loss`): the surface held to MediaPipe's tracked face mesh of the
neutral frame, the face's relief, which a near-frontal clip's colours and silhouettes hardly
constrain; optional (off) Laplacian and SDF-sign regularisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SettingsError
from .data import ReconData, symmetric_face
from .dmtet import DMTetHead
from .raster import rasterize


@dataclass
class MeshTrainConfig:
    iters: int = 1000
    batch: int = 2
    lr_sdf: float = 2e-3
    lr_offsets: float = 1e-2
    lr_features: float = 1e-2
    lr_mlp: float = 1e-3
    lr_landmarks: float = 1e-4
    w_rgb: float = 0.1
    w_def: float = 1.0
    w_sil: float = 0.1
    w_lmk: float = 0.01
    w_sdf_reg: float = 0.0
    w_offset: float = 1.0  # |MLP_deform|^2 at the neutral frame's expression (canonical shape = SDF)
    w_offset_frame: float = 0.01  # |MLP_deform|^2 at the frame's expression (as Gaussian-Head-Avatar)
    w_lap: float = 0.0  # Laplacian smoothing (GHA uses it; it fights the SDF under Adam, off by default)
    deform_warmup: float = 0.3  # fraction of iterations with MLP_deform frozen (geometry first)
    w_sym: float = 1.0  # mean |SDF(x) - SDF(mirror x)| about the face's plane (a symmetric head)
    w_face: float = 0.0  # the surface held to the neutral frame's tracked face mesh, made symmetric (face_surface_loss)
    sigma: float = 0.5


def soft_iou_loss(alpha: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    a = alpha * valid
    m = mask * valid
    inter = (a * m).sum()
    union = (a + m - a * m).sum().clamp_min(1e-6)
    return 1 - inter / union


def masked_l1(img: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return ((img - target).abs() * valid).sum() / (valid.sum() * img.shape[-1]).clamp_min(1.0)


def make_optimizer(model: DMTetHead, cfg: MeshTrainConfig) -> torch.optim.Adam:
    groups = [
        {"params": [model.sdf], "lr": cfg.lr_sdf, "name": "sdf"},
        {"params": [model.offsets], "lr": cfg.lr_offsets, "name": "offsets"},
        {"params": [model.features], "lr": cfg.lr_features, "name": "features"},
        {"params": list(model.deform.parameters()) + list(model.color.parameters()), "lr": cfg.lr_mlp, "name": "mlp"},
        {"params": [model.landmarks], "lr": cfg.lr_landmarks, "name": "landmarks"},
    ]
    return torch.optim.Adam(groups, betas=(0.9, 0.99))


def mesh_losses(model: DMTetHead, data: ReconData, frames, cfg: MeshTrainConfig, views=None) -> dict:
    """Loss terms averaged over ``frames`` (indices into ``data``).

    ``views`` optionally adds extra supervised images: a list of (image, mask, K, world_to_cam,
    expression) tuples (used for prior views; not used by the paper's stage 1).
    """
    mesh = model.extract()
    if mesh.faces.shape[0] == 0:
        raise SettingsError(
            "the stage-1 DMTet surface vanished (its SDF has no zero crossing left in the grid, so there is no "
            "mesh to fit); these mesh options do not work on this clip: go back to the defaults (mesh.init=hull, "
            "mesh.extent, mesh.radius), or with mesh.init=sphere turn the symmetry term off (--set "
            "mesh.train.w_sym=0) or lower mesh.train.lr_sdf, and run reconstruct again with --force")
    sdf, _, feat = mesh.grid
    bg = data.background
    l_rgb = l_sil = l_def = l_off = l_lap = 0.0
    for i in frames:
        i = int(i)
        e = data.expression[i]
        D = model.mlp_displacement(mesh, e)  # (the penalty below is on MLP_deform's share only)
        v = mesh.verts + D + model.basis(mesh.verts, e)
        c = model.colors(mesh, e)
        r = rasterize(v, mesh.faces, c, data.K[i], data.world_to_cam[i], data.width, data.height, background=bg, sigma=cfg.sigma)
        valid = data.valid[i]
        l_rgb = l_rgb + masked_l1(r.image, data.target[i], valid)
        l_sil = l_sil + soft_iou_loss(r.alpha, data.head[i], valid)
        P = model.predict_landmarks(e, feat)
        l_def = l_def + (P - data.landmarks3d[i]).norm(dim=-1).mean()
        l_off = l_off + cfg.w_offset_frame * (D**2).sum(-1).mean()
        if cfg.w_lap > 0:
            l_lap = l_lap + laplacian_loss(v, mesh.faces)
    n = max(len(frames), 1)
    l_rgb, l_sil, l_def, l_off, l_lap = l_rgb / n, l_sil / n, l_def / n, l_off / n, l_lap / n
    if cfg.w_offset > 0 and any(p.requires_grad for p in model.deform.parameters()):
        D0 = model.mlp_displacement(mesh, data.expression[data.neutral_index])
        l_off = l_off + cfg.w_offset * (D0**2).sum(-1).mean()
    l_lmk = model.sdf_at(model.landmarks, sdf).abs().mean()
    l_sym = symmetry_loss(model, sdf) if cfg.w_sym > 0 else torch.zeros(())
    faces, mirror = data.extra.get("face_faces"), data.extra.get("face_mirror")
    l_face = (face_surface_loss(model, sdf, symmetric_face(data.neutral_landmarks, mirror), faces)
              if cfg.w_face > 0 and faces is not None else torch.zeros(()))
    l_reg = sdf_sign_reg(model, sdf) if cfg.w_sdf_reg > 0 else torch.zeros(())
    total = (cfg.w_rgb * l_rgb + cfg.w_def * l_def + cfg.w_sil * l_sil + cfg.w_lmk * l_lmk + cfg.w_sdf_reg * l_reg
             + l_off + cfg.w_lap * l_lap + cfg.w_sym * l_sym + cfg.w_face * l_face)
    return {"total": total, "rgb": l_rgb, "sil": l_sil, "def": l_def, "lmk": l_lmk, "off": l_off, "lap": l_lap,
            "sym": l_sym, "face": l_face,
            "faces": mesh.faces.shape[0]}


def symmetry_loss(model: DMTetHead, sdf: torch.Tensor) -> torch.Tensor:
    """Mean |SDF(x) - SDF(mirror x)| over the lattice. The grid is centred on the face's symmetry
    plane (x = mean of the neutral landmarks' x, see ``sphere_init``), so the mirror image of a
    lattice point is the lattice point with the x index flipped."""
    n = model.config["res"] + 1
    vol = sdf.reshape(n, n, n)
    return (vol - vol.flip(2)).abs().mean()


FACE_MIN_FACING, FACE_FULL_FACING = 0.25, 0.75  # face_surface_samples: facing (-z . normal) of weight 0 and 1
FACE_BARY = torch.tensor([[4.0, 1.0, 1.0], [1.0, 4.0, 1.0], [1.0, 1.0, 4.0], [1.0, 1.0, 1.0]]) / torch.tensor(
    [[6.0], [6.0], [6.0], [3.0]])  # where on each triangle of the face mesh the surface is held


def face_surface_samples(landmarks: torch.Tensor, faces: torch.Tensor, min_facing: float = FACE_MIN_FACING,
                         full_facing: float = FACE_FULL_FACING):
    """Points (P,3) on the triangles of MediaPipe's face mesh through ``landmarks`` (its 468 vertices
    first), four per triangle (:data:`FACE_BARY`), the triangles' unit normals (P,3) turned away
    from the head (towards -z, the side the face looks to in canonical space) and weights (P,).

    A triangle's weight rises linearly from 0 where it faces -z by ``min_facing`` (the cosine) to
    1 at ``full_facing``: the tracked depth of the face's sides, seen edge-on, is the least sure,
    and a weight that fades there leaves no step where the held surface ends. Triangles that touch
    the lips (inside the outer lip contour, open or closed from frame to frame) are left out."""
    from ..edit.regions import LIPS_OUTER

    faces = faces.long()
    tri = landmarks[:, :3][faces]  # (F,3,3)
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if float(n[:, 2].sum()) > 0:
        n = -n
    w = ((-n[:, 2] - min_facing) / max(full_facing - min_facing, 1e-6)).clamp(0, 1)
    lips = _inside_polygon(landmarks[:468, :2], landmarks[LIPS_OUTER, :2])
    keep = (w > 0) & ~lips[faces].any(1)
    tri, n, w = tri[keep], n[keep], w[keep]
    pts = torch.einsum("bk,fkc->fbc", FACE_BARY.to(tri), tri).reshape(-1, 3)
    k = FACE_BARY.shape[0]
    return pts, n.repeat_interleave(k, 0), w.repeat_interleave(k, 0)


def _inside_polygon(pts: torch.Tensor, poly: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """(P,) whether each 2D point lies inside or on the closed polygon (Q,2) (even-odd rule, plus
    the polygon's own vertices)."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    a, b = poly, poly.roll(-1, 0)
    cross = (a[:, 1] > y) != (b[:, 1] > y)
    xi = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1] + 1e-12)
    inside = (cross & (x < xi)).sum(1) % 2 == 1
    on_vertex = ((pts[:, None] - poly[None]).norm(dim=-1) < tol).any(1)
    return inside | on_vertex


def face_surface_loss(model: DMTetHead, sdf: torch.Tensor, landmarks: torch.Tensor,
                      faces: torch.Tensor) -> torch.Tensor:
    """The canonical surface held to the tracked face: mean |SDF| at points on the face mesh through
    ``landmarks`` (MediaPipe's 468 landmarks and their triangles, the only depth the clip gives for
    the face's relief; stage 1 passes :func:`symmetric_face` of the neutral frame's), plus the
    sign a surface there must have half a grid cell in front of those points (outside, SDF > 0)
    and behind them (inside, SDF < 0); weighted as :func:`face_surface_samples` says."""
    pts, n, w = face_surface_samples(landmarks.to(sdf), faces.to(sdf.device))
    half = model.grid.cell / 2
    out, inn = model.sdf_at(pts + half * n, sdf), model.sdf_at(pts - half * n, sdf)
    per_point = model.sdf_at(pts, sdf).abs() + torch.relu(-out) + torch.relu(inn)
    return (w * per_point).sum() / w.sum().clamp_min(1e-12)


def laplacian_loss(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean squared uniform Laplacian (vertex minus the mean of its face neighbours), as in
    Gaussian-Head-Avatar's mesh stage."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    term = torch.zeros_like(verts)
    term = term.index_add(0, faces[:, 0], v1 + v2 - 2 * v0)
    term = term.index_add(0, faces[:, 1], v0 + v2 - 2 * v1)
    term = term.index_add(0, faces[:, 2], v0 + v1 - 2 * v2)
    cnt = torch.zeros(verts.shape[0], device=verts.device, dtype=verts.dtype)
    ones = torch.full((faces.shape[0],), 2.0, device=verts.device, dtype=verts.dtype)
    for k in range(3):
        cnt = cnt.index_add(0, faces[:, k], ones)
    term = term / cnt.clamp_min(1.0)[:, None]
    return (term**2).sum(-1).mean()


def sdf_sign_reg(model: DMTetHead, sdf: torch.Tensor) -> torch.Tensor:
    """DMTet/nvdiffrec sign regulariser: on grid edges where the SDF changes sign, a binary
    cross-entropy pushing each end towards the other's sign. It removes thin shells, floaters
    and internal surfaces that no image can see (not in the paper's Eq. 4; weight w_sdf_reg)."""
    e = model.edges
    sa, sb = sdf[e[:, 0]], sdf[e[:, 1]]
    cross = (sa > 0) != (sb > 0)
    if not bool(cross.any()):
        return sdf.sum() * 0
    sa, sb = sa[cross], sb[cross]
    k = 1.0 / (2 * model.config["extent"] / model.config["res"])  # SDF in cell units
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    return bce(sa * k, (sb > 0).float()) + bce(sb * k, (sa > 0).float())


@torch.no_grad()
def mesh_eval(model: DMTetHead, data: ReconData, frames, cfg: MeshTrainConfig) -> dict:
    out = mesh_losses(model, data, frames, cfg)
    return {k: float(v) for k, v in out.items()}
