"""Unit tests of the preprocessing geometry (synthetic data, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from styletalker.preprocess import geometry as geo
from styletalker.preprocess import mp_models


def _poses(n, rng, times):
    R = Rotation.from_rotvec(0.2 * np.sin(times)[:, None] * [1, 0.5, 0.2] + 0.02 * rng.normal(size=(n, 3))).as_matrix()
    w = np.tile(np.eye(4), (n, 1, 1))
    w[:, :3, :3] = R
    w[:, :3, 3] = [0.1, -0.2, 3.0] + 0.01 * rng.normal(size=(n, 3))
    return w


def test_smooth_poses_matches_dense_reference_and_reduces_jitter():
    rng = np.random.default_rng(0)
    n = 150
    times = np.sort(rng.uniform(0, 6, n))  # irregular, with gaps
    w = _poses(n, rng, times)
    s = 0.1
    out = geo.smooth_poses(w, times, s)
    # dense reference: normalised Gaussian weights within 3 sigma
    q = Rotation.from_matrix(w[:, :3, :3]).as_quat()
    for i in range(1, n):
        if q[i] @ q[i - 1] < 0:
            q[i] = -q[i]
    d = times[:, None] - times[None]
    W = np.exp(-0.5 * (d / s) ** 2) * (np.abs(d) <= 3 * s)
    W /= W.sum(1, keepdims=True)
    qs = W @ q
    assert np.allclose(out[:, :3, :3], Rotation.from_quat(qs / np.linalg.norm(qs, axis=1, keepdims=True)).as_matrix(),
                       atol=1e-9)
    assert np.allclose(out[:, :3, 3], W @ w[:, :3, 3], atol=1e-9)
    # jitter (distance to the noise-free trajectory) goes down
    clean = Rotation.from_rotvec(0.2 * np.sin(times)[:, None] * [1, 0.5, 0.2]).as_matrix()
    before = geo.rotation_angle_deg(np.swapaxes(w[:, :3, :3], 1, 2) @ clean).mean()
    after = geo.rotation_angle_deg(np.swapaxes(out[:, :3, :3], 1, 2) @ clean).mean()
    assert after < 0.7 * before
    assert np.array_equal(geo.smooth_poses(w, times, 0.0), w)


def test_gl_pose_conversion():
    # MediaPipe: face 30 cm in front of an OpenGL camera (z towards the viewer) -> 3 dm along +z (OpenCV)
    M = np.eye(4)
    M[:3, 3] = [2.0, 1.0, -30.0]
    w = mp_models.gl_pose_to_cv(M)
    assert np.allclose(w[:3, 3], [0.2, -0.1, 3.0]) and np.allclose(w[:3, :3], np.eye(3))
    # a yaw in GL maps to a rotation of the same angle; orthonormality kept
    M[:3, :3] = Rotation.from_euler("y", 20, degrees=True).as_matrix()
    w = mp_models.gl_pose_to_cv(M)
    assert geo.rotation_angle_deg(w[:3, :3]) == pytest.approx(20)
    assert np.allclose(w[:3, :3] @ w[:3, :3].T, np.eye(3))


def test_canonical_mesh_axes():
    m = mp_models.canonical_mesh()
    v = m.vertices
    assert v.shape == (468, 3) and m.faces.shape == (898, 3) and len(m.procrustes_ids) == 33
    assert v[152, 1] > v[10, 1]  # chin below forehead (y down)
    assert v[1, 2] < v[234, 2]  # nose tip nearer the camera than the cheek edge (z forward)
    assert m.uvs[152, 1] > m.uvs[10, 1]  # v from the top


def test_crop_box_and_intrinsics_consistent():
    rng = np.random.default_rng(1)
    W, H = 360, 288
    base = np.stack([rng.uniform(130, 230, 478), rng.uniform(90, 250, 478)], -1)
    lm = base[None] + rng.normal(scale=2.0, size=(5, 478, 2))
    box = geo.crop_box_from_landmarks(lm, W, H)
    x0, y0, x1, y1 = box
    assert x1 - x0 == y1 - y0 and x1 - x0 <= H  # square, fits the frame's short side
    assert x0 >= 0 and y0 >= 0 and x1 <= W and y1 <= H
    assert x0 < lm[..., 0].min() and lm[..., 0].max() < x1 and y0 < lm[..., 1].min() and lm[..., 1].max() < y1
    # a bright pixel in the source lands where crop_K says it does
    img = np.zeros((H, W, 3), np.uint8)
    img[150:152, 200:202] = 255
    size = 64
    crop = geo.crop_and_resize(img, box, size)
    K_full = mp_models.full_frame_K(W, H)
    K = geo.crop_K(K_full, box, size)
    X = np.linalg.inv(K_full) @ np.array([201.0, 151.0, 1.0]) * 3.0  # 3D point seen at source pixel centre (201,151)
    uv = geo.project(K, np.eye(4), X[None])[0]
    ys, xs = np.nonzero(crop[..., 0] > 20)
    wts = crop[ys, xs, 0].astype(float)
    assert np.allclose([np.average(xs + 0.5, weights=wts), np.average(ys + 0.5, weights=wts)], uv, atol=0.3)
    # a head bigger than the frame: padded, and the padding is reported invalid
    big = geo.crop_box_from_landmarks(np.stack([rng.uniform(0, 360, 478), rng.uniform(0, 288, 478)], -1)[None], W, H)
    assert big[2] - big[0] > H
    valid = geo.valid_region(big, W, H, 32)
    assert 0 < valid.mean() < 1 and not valid[0, 0]


def test_landmarks_3d_recovers_canonical_points():
    rng = np.random.default_rng(2)
    n = 4
    verts = mp_models.canonical_mesh().vertices.astype(np.float64)
    times = np.arange(n) * 0.1
    w = _poses(n, rng, times)
    K = np.repeat(mp_models.full_frame_K(360, 288)[None], n, 0)
    pts = np.concatenate([verts, verts[:10] + 0.01], 0)  # 478 points
    lm2d = geo.project(K, w, np.broadcast_to(pts, (n, 478, 3)))
    depth = (np.broadcast_to(pts, (n, 478, 3)) @ np.swapaxes(w[:, :3, :3], 1, 2) + w[:, None, :3, 3])[..., 2]
    fx = K[0, 0, 0]
    rel_z = (depth - depth.mean(1, keepdims=True)) / (depth.mean() / fx) * 1.3 + 5.0  # other scale + offset
    lm3d, ratio = geo.landmarks_3d(K, w, lm2d, rel_z, verts)
    assert ratio == pytest.approx(1 / 1.3, rel=0.02)
    assert np.abs(lm3d - pts).max() < 1e-3
    assert np.abs(geo.project(K, w, lm3d) - lm2d).max() < 1e-6


def test_neutral_frame_choice():
    expr = np.full((5, 52), 0.3)
    expr[:, 0] = 0
    expr[2, 1:] = 0.05  # calm face
    w = np.tile(np.eye(4), (5, 1, 1))
    w[2, :3, :3] = Rotation.from_euler("y", 5, degrees=True).as_matrix()
    w[[0, 1, 3, 4], :3, :3] = Rotation.from_euler("y", 10, degrees=True).as_matrix()
    assert geo.choose_neutral_frame(expr, w) == 2
