"""Shared 3DGS math: covariance, EWA projection, per-pixel alpha. Pure PyTorch, differentiable.

All backends must follow exactly these conventions so their outputs agree:

* quats are (w, x, y, z), normalised here; scales are linear (not log); opacities in [0,1].
* 2D covariance = J W Sigma W^T J^T + 0.3*I  (EWA low-pass, as in 3DGS / gsplat).
* pixel centre of (u, v) is (u + 0.5, v + 0.5).
* alpha = min(0.99, opacity * exp(-0.5 d^T conic d)); contributions with alpha < 1/255 are skipped.
* front-to-back by camera depth of the centre (equal depths: lower index first, i.e. a stable
  sort); a Gaussian is composited only while
  T * (1 - alpha) > 1e-4 (T = transmittance before it), i.e. compositing stops there.
* outputs: image = sum(alpha_i T_i c_i) + T_final * background, alpha = 1 - T_final,
  depth = sum(alpha_i T_i z_i) (not normalised by alpha).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
BLUR = 0.3


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (...,3,3) -> unit quaternions (...,4) wxyz with w >= 0.

    Each row uses the best-conditioned of the four standard formulas (largest of w, x, y, z), so
    it is accurate for every rotation, including 180-degree turns.
    """
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    four = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    r = torch.sqrt(four.clamp_min(1e-12))  # 2|w|, 2|x|, 2|y|, 2|z|
    d21, d02, d10 = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    s21, s02, s10 = m[:, 2, 1] + m[:, 1, 2], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1]
    cand = torch.stack([
        torch.stack([r[:, 0] ** 2, d21, d02, d10], -1) / (2 * r[:, 0:1]),
        torch.stack([d21, r[:, 1] ** 2, s10, s02], -1) / (2 * r[:, 1:2]),
        torch.stack([d02, s10, r[:, 2] ** 2, s21], -1) / (2 * r[:, 2:3]),
        torch.stack([d10, s02, s21, r[:, 3] ** 2], -1) / (2 * r[:, 3:4]),
    ], 1)  # (M,4 candidates,4)
    q = cand[torch.arange(m.shape[0], device=m.device), four.argmax(-1)]
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return q.reshape(R.shape[:-2] + (4,))


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of wxyz quaternions (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    R = quat_to_rotmat(quats)
    M = R * scales.unsqueeze(-2)  # R @ diag(s)
    return M @ M.transpose(-1, -2)


@dataclass
class Projected:
    xy: torch.Tensor  # (N,2) pixel coords of centres
    depth: torch.Tensor  # (N,)
    conic: torch.Tensor  # (N,3) inverse 2D covariance (a, b, c) for [[a,b],[b,c]]
    cov2d: torch.Tensor  # (N,2,2)
    valid: torch.Tensor  # (N,) bool: in front of the camera within (near, far)


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, camera) -> Projected:
    W = camera.world_to_cam.to(means)
    K = camera.K.to(means)
    R, t = W[:3, :3], W[:3, 3]
    pc = means @ R.T + t
    z = pc[:, 2]
    valid = (z > camera.near) & (z < camera.far)
    zs = torch.where(valid, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = pc[:, 0] / zs
    y = pc[:, 1] / zs
    # clamp the Jacobian evaluation point to a slightly enlarged frustum (as in 3DGS/gsplat)
    tanx, tany = 0.5 * camera.width / fx, 0.5 * camera.height / fy
    xc = torch.clamp(x, -(cx / fx + 0.3 * tanx), (camera.width - cx) / fx + 0.3 * tanx)
    yc = torch.clamp(y, -(cy / fy + 0.3 * tany), (camera.height - cy) / fy + 0.3 * tany)
    zero = torch.zeros_like(zs)
    J = torch.stack(
        [fx / zs, zero, -fx * xc / zs, zero, fy / zs, -fy * yc / zs], dim=-1
    ).reshape(-1, 2, 3)
    cov = covariance_3d(quats, scales)
    cov_c = R @ cov @ R.T
    cov2d = J @ cov_c @ J.transpose(-1, -2)
    cov2d = cov2d + BLUR * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = (a * c - b * b).clamp_min(1e-12)
    conic = torch.stack([c / det, -b / det, a / det], dim=-1)
    xy = torch.stack([fx * x + cx, fy * y + cy], dim=-1)
    return Projected(xy, z, conic, cov2d, valid)
