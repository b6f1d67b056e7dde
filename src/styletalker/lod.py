"""Live level of detail: for live driving, the avatar without the Gaussians that do not show
from the front.

Live driving (:mod:`styletalker.live`: ``animate --driver``, the viewer's drive panel) renders
every frame on the CPU, and every Gaussian costs MLP evaluations, anchoring and rasterization.
A reconstruction holds many that add nothing seen from the front, where a driven head is looked
at: the back and top of the head, Gaussians behind opaque ones, transparent or sub-pixel ones.
So live driving draws :class:`LiveLOD`'s pruned avatar whenever the view is one it was checked
for, and the full avatar otherwise (docs/viewer.md "Live driving"):

* :func:`contributions`: each Gaussian's largest total blending weight (the sum over the pixels
  of ``alpha_i T_i``: the gradient of the image sum by the Gaussian's colour, so exact) over
  :func:`probe_views`: 12 training frames (their expressions, poses and cameras), the reference
  view and the head turned about its centre by 15 and 30 degrees in 8 directions (yaw, pitch and
  both), each at 6 expressions of the clip far apart (farthest-point sampling from the neutral
  frame: a Gaussian may show only for one expression seen from one side), and the reference
  view at the 95th-percentile, largest and 5th-percentile trained expressions. At
  :data:`PROBE_HEIGHT` pixels.
* Gaussians that never reach :data:`MIN_WEIGHT` pixels are left out (:func:`prune`: the kept
  ones are unchanged, same mesh and MLPs).
* :meth:`LiveLOD.covers`: a view is drawn with the pruned avatar when its direction to the head's
  centre is within :data:`MAX_ANGLE` degrees of the reference view's and it magnifies the head at
  most :data:`MAX_ZOOM` times as much as a :data:`PROBE_HEIGHT`-pixel reference view.

The contributions are computed once per avatar file (seconds to a minute) and kept in memory and
in ``~/.cache/styletalker/lod/`` (``$XDG_CACHE_HOME``; ``$STYLETALKER_LOD_CACHE`` names the
folder). ``STYLETALKER_LIVE_LOD=0`` turns it off.
Quality check: ``python bench/live.py --quality`` (PSNR of the pruned avatar's pictures against
the full avatar's on every training frame and on turned views between the probed ones).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MIN_WEIGHT = 0.5  # pixels of a PROBE_HEIGHT image: Gaussians that never reach it are left out
PROBE_HEIGHT = 256
TRAIN_FRAMES = 12
RINGS = (15.0, 30.0)  # head turns probed: these many degrees from the reference view ...
AZIMUTHS = 8  # ... in as many directions (yaw, pitch and both)
EXPRESSIONS = 6  # each direction at this many of the clip's expressions, far apart
MAX_ANGLE = 30.0  # degrees between the view's and the reference view's direction to the head
MAX_ZOOM = 2.5  # magnification of the head against the reference view at PROBE_HEIGHT pixels
VERSION = 5  # of the probe set and the rule above (part of the cache key)


@dataclass
class ProbeView:
    expression: torch.Tensor  # (E,)
    world_to_cam: torch.Tensor  # (4,4)
    K: torch.Tensor  # (3,3)
    width: int
    height: int

    def camera(self):
        from .render import Camera

        return Camera(self.K, self.world_to_cam, self.width, self.height)


def turn(pivot, yaw: float, pitch: float) -> np.ndarray:
    """(4,4) rotation of the head about ``pivot`` (canonical space): ``yaw`` about the vertical
    axis, then ``pitch`` about the ear-to-ear axis, degrees (``ref_pose @ turn(...)``)."""
    a, b = math.radians(yaw), math.radians(pitch)
    Ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    R = Ry @ Rx
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = np.asarray(pivot, np.float64) - R @ np.asarray(pivot, np.float64)
    return M


def _scaled(K, width: int, height: int, new_height: int):
    from .render import scale_intrinsics

    s = new_height / height
    return scale_intrinsics(K, s), int(round(width * s)), int(new_height)


def probe_views(scene, pivot=None) -> list[ProbeView]:
    """The views :func:`contributions` looks from (module docstring), at :data:`PROBE_HEIGHT` px."""
    from .animate import head_pivot

    av = scene.avatar
    K, w, h = _scaled(scene.K, scene.width, scene.height, PROBE_HEIGHT)
    views: list[ProbeView] = []
    exprs = [scene.neutral_expression.float()]
    if scene.work is not None:
        from .workdir import is_complete
        from .workfolder import WorkFolder

        if is_complete(WorkFolder(scene.work).preprocess):
            from .preprocess import load_dataset

            ds = load_dataset(scene.work)
            n = ds.expression.shape[0]
            for i in np.unique(np.linspace(0, n - 1, min(TRAIN_FRAMES, n)).round().astype(int)):
                Ki, wi, hi = _scaled(ds.K[i], ds.width, ds.height, PROBE_HEIGHT)
                views.append(ProbeView(ds.expression[i].float(), ds.world_to_cam[i].float(), Ki, wi, hi))
            exprs = [ds.expression[i].float() for i in spread_expressions(ds.expression, EXPRESSIONS, ds.neutral_frame)]
    pivot = head_pivot(av) if pivot is None else pivot
    ref = scene.ref_pose.double().numpy()
    turns = [(0.0, 0.0)] + [(r * math.cos(2 * math.pi * j / AZIMUTHS), r * math.sin(2 * math.pi * j / AZIMUTHS))
                            for r in RINGS for j in range(AZIMUTHS)]
    # every probed direction at each of a few expressions far apart (a Gaussian may show only
    # for one expression seen from one side: a smile moves the cheek away from the temple)
    for e in exprs:
        for yaw, pitch in turns:
            views.append(ProbeView(e, torch.from_numpy(ref @ turn(pivot, yaw, pitch)).float(), K, w, h))
    if av.config.get("expression_range"):
        for name in ("expr_high", "expr_max", "expr_low"):
            views.append(ProbeView(getattr(av, name).detach().float().cpu().clone(), scene.ref_pose.float(), K, w, h))
    return views


def spread_expressions(expressions: torch.Tensor, n: int, first: int = 0) -> list[int]:
    """Indices of ``n`` rows of ``expressions`` (M,E) far apart: farthest-point sampling from row
    ``first`` (the neutral frame)."""
    e = expressions.float()
    picked = [int(first)]
    d = (e - e[first]).norm(dim=1)
    while len(picked) < min(n, e.shape[0]):
        i = int(d.argmax())
        if float(d[i]) <= 0:
            break
        picked.append(i)
        d = torch.minimum(d, (e - e[i]).norm(dim=1))
    return picked


def contributions(avatar, views: list[ProbeView]) -> torch.Tensor:
    """(N,) each Gaussian's largest total blending weight over ``views`` (pixels)."""
    from .avatar import FrozenAvatar
    from .render import render

    frozen = FrozenAvatar(avatar)
    w = torch.zeros(avatar.num_points)
    for v in views:
        g = frozen(v.expression.to(avatar.device))
        probe = torch.zeros(g.means.shape[0], 1, dtype=g.means.dtype, device=g.means.device, requires_grad=True)
        out = render(g.means, g.quats, g.scales, g.opacities, probe, v.camera().to(g.means.device), None)
        out.image.sum().backward()
        w = torch.maximum(w, probe.grad[:, 0].detach().cpu())
    return w


PER_GAUSSIAN = ("offset", "xyz", "features", "log_scales", "quats", "opacity_logits", "face_id", "bary",
                "deform_features", "color_offset")


def prune(avatar, keep: torch.Tensor):
    """A copy of ``avatar`` with only the Gaussians ``keep`` (a bool mask or indices): mesh, MLPs,
    expression range and edit residuals are the same, so each kept Gaussian is unchanged."""
    from .avatar import GaussianAvatar

    idx = torch.as_tensor(keep)
    if idx.dtype == torch.bool:
        idx = idx.nonzero()[:, 0]
    idx = idx.to(avatar.device)
    n = avatar.num_points
    sd = {k: (v[idx] if k in PER_GAUSSIAN and v.dim() >= 1 and v.shape[0] == n else v).clone()
          for k, v in avatar.state_dict().items()}
    out = GaussianAvatar.from_state(dict(avatar.config, n_points=int(idx.numel())), sd).to(avatar.device)
    out.extra = dict(getattr(avatar, "extra", {}) or {})
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _centre(world_to_cam) -> np.ndarray:
    W = np.asarray(torch.as_tensor(world_to_cam).detach().cpu().double().numpy())
    return -W[:3, :3].T @ W[:3, 3]


class LiveLOD:
    """The pruned avatar of a scene for live driving and the views it may be used for."""

    def __init__(self, scene, keep: torch.Tensor, min_weight: float, pivot=None):
        from .animate import head_pivot
        from .avatar import FrozenAvatar

        self.avatar = scene.avatar  # the full avatar this was made for
        self.keep = keep.bool().cpu()
        self.min_weight = float(min_weight)
        self.frozen = FrozenAvatar(prune(scene.avatar, self.keep))
        self.pivot = np.asarray(head_pivot(scene.avatar) if pivot is None else pivot, np.float64)
        ref = _centre(scene.ref_pose) - self.pivot
        self._ref_dir = ref / max(np.linalg.norm(ref), 1e-12)
        # pixels per canonical unit at the head's centre, reference view at PROBE_HEIGHT pixels
        self._ref_mag = float(scene.K[1, 1]) * PROBE_HEIGHT / scene.height / max(np.linalg.norm(ref), 1e-12)

    @property
    def kept(self) -> int:
        return int(self.keep.sum())

    def covers(self, K, world_to_cam) -> bool:
        """Whether the pruned avatar may draw the view ``K`` / ``world_to_cam`` (module docstring)."""
        d = _centre(world_to_cam) - self.pivot
        dist = float(np.linalg.norm(d))
        if dist <= 1e-9:
            return False
        cos = float(np.dot(d / dist, self._ref_dir))
        if cos < math.cos(math.radians(MAX_ANGLE)):
            return False
        mag = float(torch.as_tensor(K)[1, 1]) / dist
        return mag <= MAX_ZOOM * self._ref_mag


def enabled() -> bool:
    return os.environ.get("STYLETALKER_LIVE_LOD", "1") not in ("0", "", "false", "no")


def _cache_file(scene) -> Path | None:
    from .workfolder import WorkFolder

    src = Path(scene.source)
    if not src.is_file():
        return None
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    tracking = None if scene.work is None else WorkFolder(scene.work).preprocess / "tracking.npz"
    if tracking is not None and tracking.is_file():
        h.update(tracking.read_bytes())
    h.update(f"v{VERSION} {PROBE_HEIGHT}".encode())
    root = Path(os.environ.get("STYLETALKER_LOD_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "styletalker" / "lod")
    return root / f"{h.hexdigest()[:32]}.pt"


_lock = threading.Lock()


def live_lod(scene, min_weight: float = MIN_WEIGHT) -> LiveLOD | None:
    """The scene's :class:`LiveLOD` (made once and kept in ``scene.lod``; the contributions cached
    on disk per avatar file), or None when turned off (``STYLETALKER_LIVE_LOD=0``,
    ``min_weight <= 0``)."""
    if not enabled() or min_weight <= 0:
        return None
    with _lock:
        lod = getattr(scene, "lod", None)
        if lod is not None and lod.avatar is scene.avatar and lod.min_weight == float(min_weight):
            return lod
        try:
            path = _cache_file(scene)
        except OSError:
            path = None
        weight = None
        if path is not None and path.is_file():
            try:
                from .safeload import load_torch

                weight = load_torch(path, "level-of-detail cache")
                if weight.shape != (scene.avatar.num_points,):
                    weight = None
            except Exception:
                weight = None
        pivot = None
        if weight is None:
            from .animate import head_pivot

            pivot = head_pivot(scene.avatar)
            weight = contributions(scene.avatar, probe_views(scene, pivot))
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    torch.save(weight, tmp)
                    os.replace(tmp, path)
                except OSError:
                    pass
        keep = weight >= min_weight
        scene.lod = LiveLOD(scene, keep, min_weight, pivot)
        return scene.lod
