"""Pure-numpy geometry for preprocessing: crop box, intrinsics, pose smoothing/refinement,
per-frame 3D landmarks, reprojection error, neutral-frame choice."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


# ----------------------------------------------------------------------------- crop
def crop_box_from_landmarks(
    lm_px: np.ndarray, width: int, height: int, *, scale: float = 1.0
) -> tuple[int, int, int, int]:
    """One fixed square crop for the whole clip (x0, y0, x1, y1 in source pixels, x1/y1 exclusive).

    Built from the union of the per-frame landmark boxes (fw, fh = median face width/height):

    * the *head* box (must be inside the crop): union + 0.3 fw left/right, 0.45 fh above
      (hair), 0.15 fh below the chin;
    * the *wanted* box: union + 0.45 fw left/right, 0.5 fh above, 0.8 fh below (neck and some
      shoulders), times ``scale``.

    The square side is the wanted box's longer side, but not more than the frame's shorter side
    unless the head box itself needs more. It is centred on the wanted box, shifted to contain
    the head box, then shifted to stay inside the frame; only a head larger than the frame makes
    the crop extend past it (those pixels are padded black and masked out).
    """
    lo = lm_px.min(axis=1)  # (N,2)
    hi = lm_px.max(axis=1)
    fw = float(np.median(hi[:, 0] - lo[:, 0]))
    fh = float(np.median(hi[:, 1] - lo[:, 1]))
    ux0, uy0 = lo.min(axis=0)
    ux1, uy1 = hi.max(axis=0)
    head = (ux0 - 0.3 * fw, uy0 - 0.45 * fh, ux1 + 0.3 * fw, uy1 + 0.15 * fh)
    want = (ux0 - 0.45 * fw, uy0 - 0.5 * fh, ux1 + 0.45 * fw, uy1 + 0.8 * fh)
    head_side = max(head[2] - head[0], head[3] - head[1])
    want_side = max(want[2] - want[0], want[3] - want[1]) * scale
    side = int(round(max(head_side, min(want_side, min(width, height)))))
    side = max(side, 16)

    def place(w0: float, w1: float, h0: float, h1: float, n: int) -> int:
        a = 0.5 * (w0 + w1) - side / 2
        if side >= h1 - h0:  # contain the head box
            a = min(max(a, h1 - side), h0)
        a = int(round(a))
        if side <= n:
            a = min(max(a, 0), n - side)
        return a

    bx = place(want[0], want[2], head[0], head[2], width)
    by = place(want[1], want[3], head[1], head[3], height)
    return bx, by, bx + side, by + side


def valid_region(box, width: int, height: int, size: int) -> np.ndarray:
    """(size,size) bool: crop pixels whose centre lies inside the source frame (not padding)."""
    x0, y0, x1, _ = box
    s = (x1 - x0) / float(size)
    c = (np.arange(size) + 0.5) * s
    vx = (x0 + c >= 0) & (x0 + c < width)
    vy = (y0 + c >= 0) & (y0 + c < height)
    return vy[:, None] & vx[None, :]


def crop_K(K_full: np.ndarray, box, size: int) -> np.ndarray:
    """Intrinsics of the crop ``box`` resized to ``size`` x ``size``."""
    x0, y0, x1, _ = box
    s = size / float(x1 - x0)
    K = np.array(K_full, dtype=np.float64).copy()
    K[0, 0] *= s
    K[1, 1] *= s
    K[0, 2] = (K[0, 2] - x0) * s
    K[1, 2] = (K[1, 2] - y0) * s
    return K


def to_crop_px(pts_src: np.ndarray, box, size: int) -> np.ndarray:
    s = size / float(box[2] - box[0])
    return (pts_src - np.array([box[0], box[1]], dtype=np.float64)) * s


def crop_and_resize(img: np.ndarray, box, size: int | None) -> np.ndarray:
    """Crop ``box`` (may extend past the frame: black padding) and resize to ``size`` (area)."""
    import cv2

    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = img[y0:y1, x0:x1]
    if size is not None and crop.shape[0] != size:
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return np.ascontiguousarray(crop)


# ----------------------------------------------------------------------------- projection
def project(K: np.ndarray, w2c: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Project world points. K (...,3,3), w2c (...,4,4), pts (...,P,3) -> (...,P,2) pixels."""
    pc = pts @ np.swapaxes(w2c[..., :3, :3], -1, -2) + w2c[..., None, :3, 3]
    uvw = pc @ np.swapaxes(K, -1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def reprojection_error(K, w2c, pts, lm2d) -> np.ndarray:
    """Per-frame mean pixel distance between projected ``pts`` and ``lm2d``."""
    return np.linalg.norm(project(K, w2c, pts) - lm2d, axis=-1).mean(axis=-1)


# ----------------------------------------------------------------------------- pose
def refine_pose_pnp(w2c: np.ndarray, K: np.ndarray, model: np.ndarray, lm2d: np.ndarray, ids=None) -> np.ndarray:
    """Refine each frame's pose by minimising the reprojection error of the rigid ``model``
    points (Levenberg-Marquardt, OpenCV), starting from the given pose."""
    import cv2

    out = w2c.copy()
    sel = slice(None) if ids is None else ids
    obj = np.ascontiguousarray(model[sel], dtype=np.float64)
    for i in range(len(w2c)):
        rv, _ = cv2.Rodrigues(w2c[i, :3, :3])
        tv = w2c[i, :3, 3].reshape(3, 1).copy()
        img = np.ascontiguousarray(lm2d[i][sel], dtype=np.float64)
        rv, tv = cv2.solvePnPRefineLM(obj, img, K[i] if K.ndim == 3 else K, None, rv, tv)
        out[i, :3, :3] = cv2.Rodrigues(rv)[0]
        out[i, :3, 3] = tv.ravel()
    return out


def smooth_poses(w2c: np.ndarray, times: np.ndarray, sigma_s: float) -> np.ndarray:
    """Gaussian smoothing of rotations (sign-aligned quaternions) and translations over time.

    Weights use the real timestamps, so gaps from dropped frames are handled. ``sigma_s`` <= 0
    returns the input unchanged.
    """
    n = len(w2c)
    if sigma_s <= 0 or n < 3:
        return w2c.copy()
    q = Rotation.from_matrix(w2c[:, :3, :3]).as_quat()
    for i in range(1, n):  # keep consecutive quaternions in the same hemisphere
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    t = w2c[:, :3, 3]
    times = np.asarray(times, dtype=np.float64)
    # banded: neighbours within 3 sigma (times are sorted), O(N * window) memory and time
    lo = np.searchsorted(times, times - 3 * sigma_s, side="left")
    hi = np.searchsorted(times, times + 3 * sigma_s, side="right")
    idx = np.arange(n)
    qs = np.zeros_like(q)
    ts = np.zeros_like(t)
    wsum = np.zeros(n)
    for off in range(int((lo - idx).min()), int((hi - idx).max())):
        j = idx + off
        ok = (j >= lo) & (j < hi)
        jj = np.clip(j, 0, n - 1)
        w = np.where(ok, np.exp(-0.5 * ((times[jj] - times) / sigma_s) ** 2), 0.0)
        qs += w[:, None] * q[jj]
        ts += w[:, None] * t[jj]
        wsum += w
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = Rotation.from_quat(qs).as_matrix()
    out[:, :3, 3] = ts / wsum[:, None]
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation(s) R (...,3,3) in degrees."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


# ----------------------------------------------------------------------------- 3D landmarks
def landmarks_3d(
    K: np.ndarray,
    w2c: np.ndarray,
    lm2d: np.ndarray,
    rel_z_px: np.ndarray,
    canonical: np.ndarray,
    *,
    depth_blend: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Expression-dependent 3D landmarks in canonical head space.

    For each frame, MediaPipe's relative landmark depth (``rel_z_px``: z * frame width, in
    pixels of ``lm2d``) is mapped to camera depth by a linear fit ``depth ~ a + b * rel_z`` against the
    depths of the posed rigid canonical vertices (b shared by the clip, a per frame). Each 2D
    landmark is back-projected at ``(1-depth_blend) * rigid_depth + depth_blend * fitted_depth``
    (iris landmarks, which have no canonical vertex, use the fitted depth) and mapped back by the
    inverse pose, so the result reprojects exactly onto ``lm2d``.

    Returns (landmarks3d (N,478,3), depth scale ratio b / b_expected) where b_expected =
    mean depth / focal length.
    """
    n, m = lm2d.shape[:2]
    nv = canonical.shape[0]
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    pc = canonical[None] @ np.swapaxes(R, 1, 2) + t[:, None]  # (N,468,3) posed rigid model
    zc = pc[..., 2]
    z = rel_z_px[:, :nv]
    zc_c = zc - zc.mean(1, keepdims=True)
    z_c = z - z.mean(1, keepdims=True)
    b = float((zc_c * z_c).sum() / max((z_c * z_c).sum(), 1e-12))  # shared slope
    a = (zc - b * z).mean(1)  # per-frame offset
    fitted = a[:, None] + b * rel_z_px  # (N,478)
    depth = fitted.copy()
    depth[:, :nv] = (1 - depth_blend) * zc + depth_blend * fitted[:, :nv]
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    x = (lm2d[..., 0] - cx[:, None]) / fx[:, None] * depth
    y = (lm2d[..., 1] - cy[:, None]) / fy[:, None] * depth
    cam = np.stack([x, y, depth], axis=-1)
    world = (cam - t[:, None]) @ R  # R^T (p - t), row vectors
    b_expected = float(np.mean(zc) / np.mean(fx))
    return world, b / b_expected


# ----------------------------------------------------------------------------- neutral frame
def choose_neutral_frame(expression: np.ndarray, w2c: np.ndarray, exclude=()) -> int:
    """Kept frame with the most neutral expression and the most frontal pose.

    Score = normalised sum of blendshapes (except ``_neutral``, index 0) + normalised rotation
    angle from the frontal pose (identity rotation); the minimum wins. Frames in ``exclude`` (a
    hand over the face) are not chosen unless every frame is.
    """
    act = expression[:, 1:].sum(1)
    ang = rotation_angle_deg(w2c[:, :3, :3])

    def norm(v):
        r = v.max() - v.min()
        return (v - v.min()) / r if r > 1e-9 else np.zeros_like(v)

    score = norm(act) + norm(ang)
    out = np.zeros(len(score), bool)
    out[list(exclude)] = True
    if not out.all():
        score = np.where(out, np.inf, score)
    return int(np.argmin(score))
