"""Camera and head-pose arithmetic of the viewer (numpy only).

Conventions are those of docs/FORMATS.md: OpenCV cameras (x right, y down, z forward), canonical
head space in decimetres with y down. The browser's camera (viser) is a camera-to-world pose in
the same OpenCV convention with a vertical field of view and a centred principal point.

What the viewer renders for one browser camera ``V`` (world_to_cam):

    world_to_cam = V @ inv(ref_pose) @ head_pose @ motion

``ref_pose`` is the avatar's reference pose (the clip's mean head pose, ``load_scene``),
``head_pose`` the pose of the frame being shown (``ref_pose`` for still expressions, a training
frame's pose when playing, the retargeted driver pose when driving) and ``motion`` the head-pose
sliders (a rotation about the head's centre). At the reference view (``V = ref_pose``) a
training frame is rendered exactly as in the training video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class ViewCamera:
    """A pinhole camera for one render: intrinsics, world_to_cam, image size in pixels."""

    K: np.ndarray  # (3,3)
    world_to_cam: np.ndarray  # (4,4)
    width: int
    height: int


def quat_to_matrix(wxyz) -> np.ndarray:
    w, x, y, z = np.asarray(wxyz, np.float64) / max(float(np.linalg.norm(wxyz)), 1e-12)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def render_size(aspect: float, max_size: int) -> tuple[int, int]:
    """(width, height) with the browser canvas' aspect ratio and the longer side ``max_size``."""
    aspect = aspect if aspect > 0 and math.isfinite(aspect) else 1.0
    if aspect >= 1:
        return int(max_size), max(1, int(round(max_size / aspect)))
    return max(1, int(round(max_size * aspect))), int(max_size)


def browser_camera(wxyz, position, fov_y: float, aspect: float, max_size: int) -> ViewCamera:
    """The browser's camera (camera-to-world rotation ``wxyz`` and ``position``, vertical field of
    view ``fov_y`` in radians, canvas aspect ratio) as a render camera of at most ``max_size`` px."""
    c2w = np.eye(4)
    c2w[:3, :3] = quat_to_matrix(wxyz)
    c2w[:3, 3] = np.asarray(position, np.float64)
    w, h = render_size(aspect, max_size)
    f = 0.5 * h / math.tan(0.5 * float(fov_y))
    K = np.array([[f, 0.0, 0.5 * w], [0.0, f, 0.5 * h], [0.0, 0.0, 1.0]])
    return ViewCamera(K, np.linalg.inv(c2w), w, h)


def reference_view(K, height: int, ref_pose, pivot) -> dict:
    """Browser camera settings that show the avatar from its reference view: ``position`` (the
    reference camera's centre), ``look_at`` (the point on its optical axis at the depth of the
    head's centre ``pivot``, so that the mouse orbits about the head), ``up`` and ``fov``
    (vertical, radians, from the focal length)."""
    P = np.asarray(ref_pose, np.float64)
    c2w = np.linalg.inv(P)
    depth = float((P[:3, :3] @ np.asarray(pivot, np.float64) + P[:3, 3])[2])
    centre = c2w[:3, 3]
    return {"position": centre, "look_at": centre + c2w[:3, 2] * max(depth, 1e-3), "up": -c2w[:3, 1],
            "fov": 2.0 * math.atan(0.5 * float(height) / float(np.asarray(K)[1, 1]))}


def head_motion(pivot, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """(4,4) rotation of the head about ``pivot`` (canonical space): ``yaw`` about the vertical
    axis (the direction ``animate.orbit_poses`` turns), ``pitch`` about the ear-to-ear axis,
    ``roll`` about the nose axis; degrees."""
    def rot(axis: int, deg: float) -> np.ndarray:
        a = math.radians(deg)
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        R = np.eye(3)
        R[i, i], R[j, j] = c, c
        R[i, j], R[j, i] = (-s, s) if axis != 1 else (s, -s)
        return R

    R = rot(1, yaw) @ rot(0, pitch) @ rot(2, roll)
    c = np.asarray(pivot, np.float64)
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = c - R @ c
    return M


def avatar_view(view_w2c, ref_pose, head_pose, motion) -> np.ndarray:
    """``view_w2c @ inv(ref_pose) @ head_pose @ motion`` (see the module docstring)."""
    return np.asarray(view_w2c, np.float64) @ np.linalg.inv(np.asarray(ref_pose, np.float64)) \
        @ np.asarray(head_pose, np.float64) @ np.asarray(motion, np.float64)


def split_view(left: np.ndarray, right: np.ndarray, line: float = 0.15) -> np.ndarray:
    """A/B split: the left half of ``left`` next to the right half of ``right`` (same size), with
    a 2-pixel dividing line."""
    out = np.array(right, copy=True)
    w = out.shape[1]
    out[:, : w // 2] = left[:, : w // 2]
    out[:, max(w // 2 - 1, 0): w // 2 + 1] = line
    return out
