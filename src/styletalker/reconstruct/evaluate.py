"""Held-out evaluation: PSNR / SSIM of renders against frames never used for training.

Both images are compared on the constant background: the target is the frame's head region
(person mask cut at the chin plane, see :mod:`.data`) over the background; the render is the
avatar composited over the same background with pixels outside the valid region set to it.
``psnr``/``ssim`` are over the whole image (the usual head-avatar protocol); ``psnr_head`` only
over the pixels of the head mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..metrics import image_scores
from ..workdir import write_image
from .data import ReconData


@torch.no_grad()
def render_avatar_frame(avatar, data: ReconData, i: int) -> torch.Tensor:
    from ..render import Camera

    dev = avatar.device
    cam = Camera(data.K[i].to(dev), data.world_to_cam[i].to(dev), data.width, data.height)
    out = avatar.render(data.expression[i].to(dev), cam, background=data.background)
    return data.composite(out.image.detach().float().cpu().clamp(0, 1), i)


@torch.no_grad()
def render_mesh_frame(model, data: ReconData, i: int, mesh=None) -> torch.Tensor:
    from .raster import rasterize

    mesh = mesh if mesh is not None else model.extract()
    e = data.expression[i]
    r = rasterize(model.deformed(mesh, e), mesh.faces, model.colors(mesh, e), data.K[i], data.world_to_cam[i],
                  data.width, data.height, background=data.background)
    return data.composite(r.image.detach().float().cpu().clamp(0, 1), i)


def score(renders: dict[int, torch.Tensor], data: ReconData) -> dict:
    per = []
    for i, img in renders.items():
        ref = data.target[i]
        per.append({"frame": int(i), **image_scores(img, ref, data.head[i])})
    if not per:
        return {"frames": [], "psnr": None, "ssim": None, "psnr_head": None, "per_frame": []}
    heads = [p["psnr_head"] for p in per if p["psnr_head"] is not None]
    return {
        "frames": [p["frame"] for p in per],
        "psnr": float(np.mean([p["psnr"] for p in per])),
        "ssim": float(np.mean([p["ssim"] for p in per])),
        "psnr_head": float(np.mean(heads)) if heads else None,
        "per_frame": per,
    }


def evaluate_avatar(avatar, data: ReconData, indices=None) -> tuple[dict, dict]:
    idx = data.test_idx if indices is None else indices
    renders = {int(i): render_avatar_frame(avatar, data, int(i)) for i in idx}
    return score(renders, data), renders


def evaluate_mesh(model, data: ReconData, indices=None) -> tuple[dict, dict]:
    idx = data.test_idx if indices is None else indices
    with torch.no_grad():
        mesh = model.extract()
    renders = {int(i): render_mesh_frame(model, data, int(i), mesh) for i in idx}
    return score(renders, data), renders


def save_side_by_side(folder: Path, data: ReconData, renders: dict, limit: int = 4, prefix: str = "heldout") -> list[Path]:
    """PNG per held-out frame: [target | render | |difference| x4]."""
    out = []
    folder = Path(folder)
    for i in list(renders)[:limit]:
        img = renders[i]
        ref = data.target[i]
        diff = ((img - ref).abs() * 4).clamp(0, 1)
        out.append(write_image(folder / f"{prefix}_{int(i):04d}.png", torch.cat([ref, img, diff], 1)))
    return out


@torch.no_grad()
def save_orbit(path: Path, avatar, data: ReconData, center, yaws=(-90, -45, 0, 45, 90)) -> Path:
    """The avatar at the neutral frame's expression and pose, turned about the head's vertical axis
    (side views have no ground truth in a monocular video: this is for looking at)."""
    from ..render import Camera
    from .prior import yaw_matrix

    n = data.neutral_index
    ims = []
    for y in yaws:
        cam = Camera(data.K[n], data.world_to_cam[n] @ yaw_matrix(float(y), center), data.width, data.height)
        ims.append(avatar.render(data.expression[n], cam, background=data.background).image.clamp(0, 1))
    return write_image(path, torch.cat(ims, 1))


def recompute_metrics(work, write: bool = True) -> dict:
    """Re-evaluate ``work/reconstruct/avatar.pt`` on the held-out frames (same data options as the
    reconstruction); merges the numbers into ``reconstruct/metrics.json`` when ``write``."""
    from ..avatar import GaussianAvatar
    from ..workdir import atomic_write_json, read_json
    from ..workfolder import WorkFolder

    wf = WorkFolder(work)
    rec = wf.require("reconstruct")
    av = GaussianAvatar.load(wf.avatar())
    data = wf.training_views(av)
    m, _ = evaluate_avatar(av, data)
    old = read_json(wf.metrics()) if wf.metrics().is_file() else {}
    new = dict(old)
    new.update({"psnr": m["psnr"], "ssim": m["ssim"], "psnr_head": m["psnr_head"], "heldout_frames": m["frames"],
                "per_frame": m["per_frame"]})
    if write:
        atomic_write_json(wf.metrics(), new)
    return new
