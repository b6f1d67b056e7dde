"""The training views of an edit: the same frames, targets, split and background as reconstruction.

:class:`EditData` holds what the edit loop and the edit metrics need per view: the original
training image ``target`` (frame composited over the constant background with the head mask,
exactly what the avatar was reconstructed from), the head mask, the valid-pixel mask, the camera
(K + head pose), the expression and the 478 2D landmarks (3D landmarks of the frame projected
with its camera, so they match any image resolution). ``train_idx`` / ``test_idx`` is the
reconstruction split; edits train on ``train_idx`` and are measured on the held-out ``test_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..preprocess.dataset import Views
from .regions import FaceInfo


@dataclass
class EditData(Views):
    target: torch.Tensor  # (N,H,W,3) original training images over the background
    head: torch.Tensor  # (N,H,W,1) head/person mask
    valid: torch.Tensor  # (N,H,W,1) pixels that take part in losses/metrics
    K: torch.Tensor  # (N,3,3)
    world_to_cam: torch.Tensor  # (N,4,4)
    expression: torch.Tensor  # (N,E)
    landmarks2d: torch.Tensor  # (N,478,2) pixel coordinates
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    background: tuple[float, float, float]
    width: int
    height: int
    neutral_index: int = 0
    frame_ids: list[int] = field(default_factory=list)  # preprocess frame number of each view

    def __len__(self) -> int:
        return int(self.K.shape[0])

    def face(self, i: int) -> FaceInfo:
        return FaceInfo(self.landmarks2d[i].numpy(), self.head[i, ..., 0].numpy())

    def original(self, i: int) -> np.ndarray:
        return self.target[i].numpy()

    def frame_id(self, i: int) -> int:
        return int(self.frame_ids[i]) if self.frame_ids else int(i)


def project_landmarks(K: torch.Tensor, world_to_cam: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(N,3,3), (N,4,4), (N,L,3) canonical -> (N,L,2) pixel coordinates."""
    pc = pts @ world_to_cam[:, :3, :3].transpose(1, 2) + world_to_cam[:, None, :3, 3]
    z = pc[..., 2:3].clamp_min(1e-6)
    uv = pc[..., :2] / z
    fx, fy = K[:, None, 0, 0], K[:, None, 1, 1]
    cx, cy = K[:, None, 0, 2], K[:, None, 1, 2]
    return torch.stack([uv[..., 0] * fx + cx, uv[..., 1] * fy + cy], -1)


def load_edit_data(work, avatar=None, **overrides) -> EditData:
    """Build :class:`EditData` from the work folder's training views
    (:meth:`~styletalker.workfolder.WorkFolder.training_views`, same options and overrides)."""
    from ..workfolder import WorkFolder

    rd = WorkFolder(work).training_views(avatar, **overrides)
    keep = rd.extra.get("source_frames") if isinstance(getattr(rd, "extra", None), dict) else None
    if keep is None:
        keep = torch.arange(len(rd))
    lm3d = rd.landmarks3d
    lm2d = project_landmarks(rd.K, rd.world_to_cam, lm3d)
    return EditData(
        target=rd.target.float(), head=rd.head.float(), valid=rd.valid.float(), K=rd.K.float(),
        world_to_cam=rd.world_to_cam.float(), expression=rd.expression.float(), landmarks2d=lm2d.float(),
        train_idx=rd.train_idx.long(), test_idx=rd.test_idx.long(),
        background=tuple(float(b) for b in rd.background), width=int(rd.width), height=int(rd.height),
        neutral_index=int(rd.neutral_index), frame_ids=[int(k) for k in torch.as_tensor(keep).tolist()],
    )
