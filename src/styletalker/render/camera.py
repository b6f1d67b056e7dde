"""Pinhole camera in OpenCV convention (x right, y down, z forward)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Camera:
    """A pinhole camera.

    K:            (3,3) intrinsics in pixels; pixel (u, v) has its centre at (u+0.5, v+0.5).
    world_to_cam: (4,4) rigid transform taking world (= canonical head space) points to the
                  camera frame.  For a video frame this is the tracked head pose.
    width, height: image size in pixels.
    near, far:    Gaussians whose centre depth is outside (near, far) are culled.
    """

    K: torch.Tensor
    world_to_cam: torch.Tensor
    width: int
    height: int
    near: float = 0.01
    far: float = 1000.0

    def to(self, device=None, dtype=None) -> "Camera":
        return Camera(
            self.K.to(device=device, dtype=dtype),
            self.world_to_cam.to(device=device, dtype=dtype),
            self.width,
            self.height,
            self.near,
            self.far,
        )

    @staticmethod
    def from_fov(width: int, height: int, fov_y_deg: float, world_to_cam: torch.Tensor | None = None, **kw) -> "Camera":
        fy = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        K = torch.tensor([[fy, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])
        if world_to_cam is None:
            world_to_cam = torch.eye(4)
        return Camera(K, world_to_cam.to(K.dtype), width, height, **kw)


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float | None = None) -> torch.Tensor:
    """``K`` (3,3) or (N,3,3) for images resampled by ``sx`` horizontally and ``sy`` (default
    ``sx``) vertically: rows 0 and 1 scaled, so pixel centres (u+0.5, v+0.5) stay on the same rays.
    The one rule for resized views (training ``size``, render ``scale``, probes); a new tensor."""
    K = torch.as_tensor(K).clone().float()
    K[..., 0, :] *= sx
    K[..., 1, :] *= sx if sy is None else sy
    return K


def view_camera(K: torch.Tensor, world_to_cam: torch.Tensor, width: int, height: int, scale: float = 1.0) -> Camera:
    """The one camera builder of every view (training views, :class:`~styletalker.animate.AvatarScene`,
    edit metrics): intrinsics ``K`` and pose ``world_to_cam`` for a ``width`` x ``height`` image,
    both scaled by ``scale`` (:func:`scale_intrinsics`, sizes rounded); float32 copies."""
    K = scale_intrinsics(K, scale) if scale != 1.0 else torch.as_tensor(K).clone().float()
    w, h = (int(width), int(height)) if scale == 1.0 else (int(round(width * scale)), int(round(height * scale)))
    return Camera(K, torch.as_tensor(world_to_cam).clone().float(), w, h)


def look_at(eye, target, up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """World-to-camera (4,4) for a camera at ``eye`` looking at ``target`` (OpenCV axes).

    ``up`` is the world direction that should appear *up* in the image (image y points down,
    so the default (0,-1,0) means "world -y is up", matching a camera-aligned world).
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32)
    up = torch.as_tensor(up, dtype=torch.float32)
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(-up, z)  # image x (right) = down x forward
    x = x / x.norm()
    y = torch.linalg.cross(z, x)  # image y (down)
    R = torch.stack([x, y, z])  # rows: camera axes in world coords
    M = torch.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ eye
    return M
