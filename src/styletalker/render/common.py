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
