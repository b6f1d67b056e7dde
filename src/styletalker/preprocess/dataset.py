"""Reading ``work/preprocess/`` back as tensors: :func:`load_dataset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..safeload import MAX_IMAGE_SIDE, check, load_json_dict, load_npz, reading


class Views:
    """Per-view ``K`` (N,3,3), ``world_to_cam`` (N,4,4), ``width``, ``height``: the one camera
    of every set of views (:class:`Dataset`, the training views ``ReconData``); the camera of view
    ``i`` comes from :func:`styletalker.render.view_camera`, as ``AvatarScene.camera`` does."""

    def camera(self, i: int, scale: float = 1.0):
        from ..render import view_camera

        i = int(i)
        return view_camera(self.K[i], self.world_to_cam[i], self.width, self.height, scale)


@dataclass
class CanonicalMeshT:
    """Canonical face mesh in canonical head space (decimetres, OpenCV axes)."""

    vertices: torch.Tensor  # (468,3) float32
    faces: torch.Tensor  # (F,3) int64
    uvs: torch.Tensor  # (468,2) float32, v from the top


@dataclass
class Dataset(Views):
    """A preprocessed clip. Per-frame tensors have N = number of kept frames.

    ``images`` (N,H,W,3) float32 in [0,1] and ``masks`` (N,H,W,1) float32 in {0,1} are loaded
    from the PNGs on first access (then cached); ``image(i)`` / ``mask(i)`` load one frame.
    """

    root: Path
    K: torch.Tensor  # (N,3,3)
    world_to_cam: torch.Tensor  # (N,4,4)
    expression: torch.Tensor  # (N,52)
    landmarks2d: torch.Tensor  # (N,478,2) crop pixels
    landmarks3d: torch.Tensor  # (N,478,3) canonical space
    frame_index: torch.Tensor  # (N,) int64, source frame index
    time: torch.Tensor  # (N,) float64 seconds
    crop_box: torch.Tensor  # (N,4) int64
    neutral_frame: int
    canonical_mesh: CanonicalMeshT
    expression_names: list[str]
    fps: float
    width: int
    height: int
    manifest: dict
    _images: torch.Tensor | None = field(default=None, repr=False)
    _masks: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.K.shape[0])

    # --- images
    def image(self, i: int) -> torch.Tensor:
        from .pipeline import frame_name, read_png

        return torch.from_numpy(read_png(self.root / "frames" / frame_name(int(i)))).float().div_(255.0)

    def mask(self, i: int) -> torch.Tensor:
        from .pipeline import frame_name, read_png

        m = read_png(self.root / "masks" / frame_name(int(i)), gray=True)
        return torch.from_numpy(m > 127).float().unsqueeze(-1)

    def occluder(self, i: int) -> torch.Tensor:
        """(H,W,1) 1 where a hand covers frame ``i`` (``occluders/``; zeros for a folder
        preprocessed without hands or before they were found)."""
        from .pipeline import OCCLUDERS, frame_name, read_png

        path = self.root / OCCLUDERS / frame_name(int(i))
        if not path.is_file():
            return torch.zeros(self.height, self.width, 1)
        return torch.from_numpy(read_png(path, gray=True) > 127).float().unsqueeze(-1)

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = torch.stack([self.image(i) for i in range(len(self))])
        return self._images

    @property
    def masks(self) -> torch.Tensor:
        if self._masks is None:
            self._masks = torch.stack([self.mask(i) for i in range(len(self))])
        return self._masks

    @property
    def occluders(self) -> torch.Tensor:
        """(N,H,W,1) :meth:`occluder` of every frame (not cached: read once by the consumers)."""
        return torch.stack([self.occluder(i) for i in range(len(self))])

    # --- mesh
    @property
    def vertices(self) -> torch.Tensor:
        return self.canonical_mesh.vertices

    @property
    def faces(self) -> torch.Tensor:
        return self.canonical_mesh.faces

    @property
    def uvs(self) -> torch.Tensor:
        return self.canonical_mesh.uvs


# tracking.npz: per-frame arrays and the shape of one frame's entry (docs/FORMATS.md)
TRACK_SHAPES = {"frame_index": (), "time": (), "K": (3, 3), "world_to_cam": (4, 4), "expression": (None,),
                "landmarks2d": (478, 2), "landmarks3d": (478, 3), "crop_box": (4,)}


def _check_preprocess(root: Path, man: dict, tr: dict, mesh: dict) -> None:
    """Shapes and ranges of what load_dataset reads, so that a damaged file stops here with its
    name instead of failing somewhere downstream."""
    hint = f"re-run `styletalker preprocess VIDEO {root.parent} --force`"
    n = len(tr["frame_index"]) if np.ndim(tr["frame_index"]) == 1 else -1
    for k, shape in TRACK_SHAPES.items():
        a = tr[k]
        ok = a.ndim == 1 + len(shape) and a.shape[0] == n and all(s is None or s == d for s, d in zip(shape, a.shape[1:]))
        check(ok and a.dtype.kind in "biuf", root / "tracking.npz", "tracking file",
              f"{k} has shape {a.shape} {a.dtype}, expected ({n}, {', '.join(map(str, shape))}) numbers", hint)
        check(bool(np.isfinite(a).all()), root / "tracking.npz", "tracking file", f"{k} holds NaN or inf", hint)
    check(n > 0, root / "tracking.npz", "tracking file", "no frames", hint)
    w, h = man["image_size"]
    names = man["expression_names"]
    check(0 < int(w) <= MAX_IMAGE_SIDE and 0 < int(h) <= MAX_IMAGE_SIDE and 0 <= int(man["neutral_frame"]) < n
          and float(man["fps"]) > 0 and isinstance(names, list) and len(names) == tr["expression"].shape[1],
          root / "manifest.json", "preprocess manifest",
          "image_size, neutral_frame, fps or expression_names out of range", hint)
    v, f, uv = mesh["vertices"], mesh["faces"], mesh["uvs"]
    check(v.ndim == 2 and v.shape[1] == 3 and f.ndim == 2 and f.shape[1] == 3 and uv.shape == (len(v), 2)
          and f.dtype.kind in "iu" and (f.size == 0 or (f.min() >= 0 and f.max() < len(v))),
          root / "canonical_mesh.npz", "canonical mesh", "shapes or face indices out of range", hint)


def load_dataset(work) -> Dataset:
    """Load ``work/preprocess/``; raises MissingStageError if preprocessing is missing/incomplete,
    InputError (naming the file) if one of its files is damaged."""
    from ..workfolder import WorkFolder

    root = WorkFolder(work).require("preprocess")
    man = load_json_dict(root / "manifest.json", "preprocess manifest")
    tr = load_npz(root / "tracking.npz", "tracking file")
    mesh = load_npz(root / "canonical_mesh.npz", "canonical mesh")
    with reading(root, "preprocess folder", f"re-run `styletalker preprocess VIDEO {work} --force`"):
        _check_preprocess(Path(root), man, tr, mesh)

        def f32(k):
            return torch.from_numpy(np.ascontiguousarray(tr[k], dtype=np.float32))

        w, h = man["image_size"]
        return Dataset(
            root=Path(root),
            K=f32("K"),
            world_to_cam=f32("world_to_cam"),
            expression=f32("expression"),
            landmarks2d=f32("landmarks2d"),
            landmarks3d=f32("landmarks3d"),
            frame_index=torch.from_numpy(tr["frame_index"].astype(np.int64)),
            time=torch.from_numpy(tr["time"].astype(np.float64)),
            crop_box=torch.from_numpy(tr["crop_box"].astype(np.int64)),
            neutral_frame=int(man["neutral_frame"]),
            canonical_mesh=CanonicalMeshT(
                torch.from_numpy(mesh["vertices"].astype(np.float32)),
                torch.from_numpy(mesh["faces"].astype(np.int64)),
                torch.from_numpy(mesh["uvs"].astype(np.float32)),
            ),
            expression_names=list(man["expression_names"]),
            fps=float(man["fps"]),
            width=int(w),
            height=int(h),
            manifest=man,
        )
