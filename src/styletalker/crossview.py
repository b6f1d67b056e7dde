"""How the avatar holds up away from its training camera: cross-camera scores and a turn-away check.

Cross-camera scoring (``styletalker evaluate WORK --views OTHER``)
-----------------------------------------------------------------
A monocular video cannot score the sides of the head. A second camera filming the same person at
the same time can: ``OTHER`` is that camera's clip preprocessed into its own work folder
(``styletalker preprocess other.mp4 OTHER``; frame ``k`` of both videos must be the same instant).
For every instant both clips kept, the avatar of ``WORK`` is rendered with

* the head pose and intrinsics tracked in ``OTHER`` (the other camera), and
* the expression tracked in ``WORK`` (the training camera) at that instant,

and compared with ``OTHER``'s frame: its head region (person mask cut at the chin plane) over the
reconstruction's background, at the reconstruction's image size -- the same protocol as the
held-out frames (:mod:`styletalker.reconstruct.evaluate`). PSNR / SSIM over the whole crop,
PSNR inside the head mask.

How much of the gap is the shape: the silhouette IoU of the render (alpha > 0.5) against the
other camera's head mask, and the *shape ceiling*, the PSNR of the other camera's own frame cut to
the render's silhouette (its pixels inside, the background outside): what a perfect texture on
this shape would score. A score far below its ceiling is the appearance; a low ceiling is the shape.
The ceiling forgives the render's pixels outside the head (the frame's background is taken there),
so the scores also give the *outline share*: the part of the render's squared error in the pixels
where the two silhouettes disagree (head not covered, or covered outside the head).

Each camera's tracked pose has its own error (the tracker's fixed 63-degree virtual camera, its
depth and scale), so the scores are also given after a 2D similarity alignment: the training
camera's 3D landmarks of that instant, projected with the other camera's pose, are fitted (scale,
rotation, shift; least squares) onto the landmarks tracked in the other camera, and the render is
warped by that fit before scoring. The difference between the two is the part of the gap that is
alignment, not the avatar. Per-frame fits follow each frame's landmark noise, so the scores are
also given after a *rig alignment*: one rigid transform of the head (rotation about and shift
from the training landmarks' centre, 6 numbers) for all the camera's instants, fitted on the same
face landmarks (least squares with a soft-L1 loss, 2 px scale) and applied to the other camera's
tracked pose before rendering: what a fixed error between the two cameras' tracking (a rig has a
fixed relative pose) costs. It is fitted on the face, not on the outline or the colours, so it
does not absorb the avatar's own errors.

Turn-away check (:func:`yaw_sweep`)
----------------------------------
The avatar at its reference pose and neutral expression, turned about the head's vertical axis by
each requested yaw, is given to the MediaPipe face landmarker: was a face found, and how far is
the yaw it tracks (relative to the yaw-0 render) from the requested one. The same renders are
checked for the backdrop's colour (:class:`BackdropCheck`).

Backdrop colour (:class:`BackdropCheck`)
----------------------------------------
How much of the clip's backdrop colour the avatar's hair, face and ears hold (the mask's outline
mixes it in): every rendered pixel above the chin (alpha > 0.5, its colour taken off the render's
background) is explained as the nearest mix ``(1 - t) p + t b`` of one of the person's 16 colours
``p`` (k-means of the head pixels above the chin at least 3 px inside the head mask) and the
backdrop's colour ``b`` (the median of the pixels off the person mask); the *backdrop share* is
the share of those pixels with ``t`` > 0.25. The same share of the frames' own head pixels above
the chin (the whole head mask, outline included) is what the frames hold. Not measured (None)
where the backdrop's colour is within
:data:`~styletalker.reconstruct.data.BACKDROP_MIN_CONTRAST` (RGB distance) of one of the
person's: the two cannot be told apart (the rule the unmixing of the training frames follows).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .metrics import image_scores, psnr

DEFAULT_YAWS = tuple(range(-60, 61, 15))
# the shape ceiling of a frame whose head the render's silhouette covers exactly (the cut frame is
# the frame itself: PSNR infinite), so that one such frame does not make the mean infinite
SHAPE_CEILING_CAP_DB = 60.0


# ---------------------------------------------------------------------------------------------
# cross-camera scoring


def match_frames(frame_index_a, frame_index_b) -> tuple[np.ndarray, np.ndarray]:
    """Rows (ia, ib) of two synchronised clips that show the same source frame number."""
    a = np.asarray(frame_index_a).astype(np.int64)
    b = np.asarray(frame_index_b).astype(np.int64)
    common, ia, ib = np.intersect1d(a, b, return_indices=True)
    return ia, ib


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity (scale, rotation, shift) mapping points ``src`` (N,2) onto ``dst`` (N,2),
    least squares (Umeyama without reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    var = (s0**2).sum() / len(src)
    scale = float((S * np.diag(D)).sum() / max(var, 1e-12))
    A = np.zeros((2, 3))
    A[:, :2] = scale * R
    A[:, 2] = md - scale * R @ ms
    return A


def _rig_matrix(x: np.ndarray, center: np.ndarray) -> np.ndarray:
    """4x4 canonical-space transform: rotation vector ``x[:3]`` about ``center``, then shift ``x[3:]``."""
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec(x[:3]).as_matrix()
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = center - R @ center + x[3:]
    return M


def fit_rig(K: np.ndarray, w2c: np.ndarray, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, dict]:
    """One rigid transform ``M`` (4x4, canonical space) for all instants such that the training
    camera's 3D landmarks ``src`` (N,L,3), moved by ``M`` and projected with the other camera's
    ``K`` (N,3,3) and ``w2c`` (N,4,4), land on the pixels ``dst`` (N,L,2) tracked there (module
    doc). Returns ``M`` and ``{"rotation_deg": [yaw, pitch, roll], "shift_mm", "landmark_px":
    [before, after]}`` (mean pixel distance)."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    center = src.reshape(-1, 3).mean(0)

    def resid(x):
        M = _rig_matrix(x, center)
        return np.concatenate([(_project(K[i], w2c[i] @ M, src[i]) - dst[i]).ravel() for i in range(len(src))])

    def mean_px(x):
        return float(np.linalg.norm(resid(x).reshape(-1, 2), axis=1).mean())

    sol = least_squares(resid, np.zeros(6), loss="soft_l1", f_scale=2.0)
    yaw, pitch, roll = Rotation.from_rotvec(sol.x[:3]).as_euler("yxz", degrees=True)
    info = {"rotation_deg": [float(yaw), float(pitch), float(roll)],
            "shift_mm": float(np.linalg.norm(sol.x[3:]) * 100),  # canonical space is in decimetres
            "landmark_px": [mean_px(np.zeros(6)), mean_px(sol.x)]}
    return _rig_matrix(sol.x, center), info


def _warp(img: np.ndarray, A: np.ndarray, background) -> np.ndarray:
    import cv2

    H, W = img.shape[:2]
    # pixel centres at +0.5 (render convention) -> cv2's integer centres
    T = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    Ti = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    M = (T @ np.vstack([A, [0, 0, 1]]) @ Ti)[:2]
    return cv2.warpAffine(img.astype(np.float32), M, (W, H), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(b) for b in background))


def _project(K: np.ndarray, w2c: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = np.clip(pc[:, 2:3], 1e-6, None)
    return np.stack([K[0, 0] * pc[:, 0] / z[:, 0] + K[0, 2], K[1, 1] * pc[:, 1] / z[:, 0] + K[1, 2]], 1)


def other_view_data(other, size: int, data_opts: dict):
    """The other camera's clip as :class:`~styletalker.reconstruct.data.ReconData` (every frame, no
    held-out split) with the reconstruction's data options."""
    from .preprocess import load_dataset
    from .reconstruct.data import from_dataset

    ds = load_dataset(other)
    bg = tuple(float(b) for b in data_opts.get("background", (1.0, 1.0, 1.0)))
    return ds, from_dataset(ds, size=size, holdout_every=0, cut_margin=float(data_opts.get("cut_margin", 0.05)),
                            background=bg)


@torch.no_grad()
def cross_view_scores(work, other, *, edit: str | None = None, align: bool = True, max_frames: int | None = None,
                      sheet: str | Path | None = None, sheet_frames: int = 4, show_progress: bool = False) -> dict:
    """Score the avatar of ``work`` against a synchronised second camera ``other`` (module doc).

    Returns ``{"frames", "psnr", "ssim", "psnr_head", "aligned": {...}, "rig": {...}, "per_frame":
    [...], "landmark_px"}``; ``landmark_px`` is the mean distance between the training camera's
    landmarks projected with the other camera's pose and the landmarks tracked there, before
    alignment; ``rig`` holds the scores after the rig alignment and its fit (:func:`fit_rig`).
    ``sheet``: a PNG with rows [other camera | render | aligned render | 4x |difference|].
    """
    from .animate import load_scene
    from .preprocess import load_dataset
    from .render import Camera
    from .workdir import progress, write_image
    from .workfolder import WorkFolder

    work, other = Path(work), Path(other)
    scene = load_scene(work, edit)
    if scene.work is None:
        raise InputError(f"{work}: --views needs a work folder (the training camera's tracking)")
    if other.resolve() == work.resolve():
        raise InputError("--views: the other camera's work folder is the training folder itself")
    ds = load_dataset(work)
    opts = WorkFolder(work).data_options(scene.avatar)
    size = int(opts.get("size") or ds.width)
    ods, od = other_view_data(other, size, opts)
    ia, ib = match_frames(ds.frame_index.numpy(), ods.frame_index.numpy())
    if len(ia) == 0:
        raise InputError(f"{other}: no frame of this clip has a frame number in common with {work}'s clip "
                         "(the two videos must be synchronised: frame k of each is the same instant)")
    if max_frames and len(ia) > max_frames:
        keep = np.linspace(0, len(ia) - 1, max_frames).round().astype(int)
        ia, ib = ia[keep], ib[keep]
    av = scene.avatar
    bg = torch.tensor(od.background, dtype=torch.float32)
    mesh_ids = slice(0, 468)
    # the face landmarks of both cameras' tracking, in the other camera's pixels
    Ks, w2cs = od.K[ib].numpy().astype(np.float64), od.world_to_cam[ib].numpy().astype(np.float64)
    lm_train = ds.landmarks3d[ia][:, mesh_ids].numpy().astype(np.float64)
    src_px = np.stack([_project(Ks[k], w2cs[k], lm_train[k]) for k in range(len(ia))])
    dst_px = np.stack([_project(Ks[k], w2cs[k], ods.landmarks3d[b][mesh_ids].numpy().astype(np.float64))
                       for k, b in enumerate(ib.tolist())])
    if align:
        rig, rig_info = fit_rig(Ks, w2cs, lm_train, dst_px)

    def render(a, b, w2c):
        out = av.render(ds.expression[a], Camera(od.K[b], w2c, od.width, od.height), background=bg)
        return out, od.composite(out.image.float().clamp(0, 1), b).numpy()

    per, rows = [], []
    it = progress(list(zip(ia.tolist(), ib.tolist())), desc="cross-view", unit="fr", disable=not show_progress)
    for k, (a, b) in enumerate(it):
        out, img = render(a, b, od.world_to_cam[b])
        ref = od.target[b].numpy()
        head = od.head[b].numpy()
        rec = {"frame": int(ds.frame_index[a]), **image_scores(img, ref, head)}
        rec.update(shape_scores((out.alpha.float() * od.valid[b]).numpy(), head, ref, od.background, img))
        src, dst = src_px[k], dst_px[k]
        rec["landmark_px"] = float(np.linalg.norm(src - dst, axis=1).mean())
        aimg = None
        if align:
            A = fit_similarity(src, dst)
            aimg = _warp(out.image.float().clamp(0, 1).numpy(), A, od.background)
            aimg = od.composite(torch.from_numpy(aimg), b).numpy()
            rec["aligned"] = {**image_scores(aimg, ref, head), "scale": float(np.sqrt(abs(np.linalg.det(A[:, :2])))),
                              "shift_px": float(np.linalg.norm(A[:, 2] + (A[:, :2] - np.eye(2)) @ src.mean(0)))}
            _, rimg = render(a, b, torch.from_numpy(w2cs[k] @ rig).float())
            rec["rig"] = image_scores(rimg, ref, head)
        per.append(rec)
        if sheet is not None and len(rows) < sheet_frames and (len(per) - 1) % max(1, len(ia) // sheet_frames) == 0:
            diff = np.clip(np.abs((aimg if aimg is not None else img) - ref) * 4, 0, 1)
            rows.append(np.concatenate([ref, img] + ([aimg] if aimg is not None else []) + [diff], 1))
    res = _summary(per)
    if align:
        res["aligned"] = _summary([p["aligned"] for p in per])
        res["aligned"].pop("per_frame", None)
        res["rig"] = _summary([p["rig"] for p in per])
        res["rig"].pop("per_frame", None)
        res["rig"].update(rig_info)
    res["landmark_px"] = float(np.mean([p["landmark_px"] for p in per]))
    res.update({"other": str(other), "size": size, "per_frame": per})
    if sheet is not None and rows:
        res["sheet"] = str(write_image(sheet, np.concatenate(rows, 0)))
    return res


def shape_scores(alpha: np.ndarray, head: np.ndarray, ref: np.ndarray, background, img: np.ndarray | None = None) -> dict:
    """``iou`` of the render's silhouette (``alpha`` (H,W,1) > 0.5) with the ``head`` mask (H,W,1)
    and ``psnr_shape``, the PSNR of ``ref`` cut to that silhouette (module doc: the shape ceiling;
    at most :data:`SHAPE_CEILING_CAP_DB`);
    with the render ``img``, ``outline_share``: the fraction of its squared error where the two
    silhouettes disagree."""
    sil, gt = alpha[..., 0] > 0.5, head[..., 0] > 0.5
    union = int((sil | gt).sum())
    cut = np.where(sil[..., None], ref, np.asarray(background, ref.dtype)).astype(ref.dtype)
    res = {"iou": float((sil & gt).sum() / union) if union else None, "psnr_shape": min(psnr(cut, ref), SHAPE_CEILING_CAP_DB)}
    if img is not None:
        err = ((np.asarray(img, np.float64) - ref) ** 2).sum(-1)
        total = float(err.sum())
        res["outline_share"] = float(err[sil ^ gt].sum() / total) if total > 0 else None
    return res


def _summary(per: list[dict]) -> dict:
    def mean(key):
        v = [p[key] for p in per if p.get(key) is not None]
        return float(np.mean(v)) if v else None

    res = {"frames": len(per), "psnr": mean("psnr"), "ssim": mean("ssim"), "psnr_head": mean("psnr_head")}
    res.update({k: mean(k) for k in ("iou", "psnr_shape", "outline_share") if any(k in p for p in per)})
    res["per_frame"] = per
    return res


def format_scores(name: str, r: dict) -> str:
    s = f"{name}: {r['frames']} frames  PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}"
    if r.get("psnr_head") is not None:
        s += f"  PSNR(head) {r['psnr_head']:.2f} dB"
    if r.get("iou") is not None:
        s += f"  silhouette IoU {r['iou']:.3f} (shape ceiling {r['psnr_shape']:.2f} dB"
        if r.get("outline_share") is not None:
            s += f"; {r['outline_share']:.0%} of the error on the outline"
        s += ")"
    if r.get("aligned"):
        a = r["aligned"]
        s += f"  | aligned: PSNR {a['psnr']:.2f} dB  SSIM {a['ssim']:.4f}"
    if r.get("rig"):
        g = r["rig"]
        yaw, pitch, roll = g["rotation_deg"]
        s += (f"  | rig-aligned: PSNR {g['psnr']:.2f} dB  SSIM {g['ssim']:.4f} (one pose for the camera: yaw "
              f"{yaw:+.1f} pitch {pitch:+.1f} roll {roll:+.1f} deg, shift {g['shift_mm']:.1f} mm; landmarks "
              f"{g['landmark_px'][0]:.1f} -> {g['landmark_px'][1]:.1f} px)")
    if r.get("landmark_px") is not None:
        s += f"  (pose disagreement {r['landmark_px']:.1f} px)"
    return s


# ---------------------------------------------------------------------------------------------
# turn-away check


def yaw_of(R: np.ndarray) -> float:
    """Yaw (degrees, about the head's vertical axis) of a rotation in canonical head space."""
    return math.degrees(math.atan2(R[0, 2], R[2, 2]))


class BackdropCheck:
    """How much of the backdrop's colour the avatar's hair, face and ears hold (module doc)."""

    COLOURS = 16
    TINTED = 0.25  # a pixel holding more of the backdrop's colour than this counts

    def __init__(self, data, frames: int = 12):
        """``data``: the clip's :class:`~styletalker.reconstruct.data.ReconData`; ``frames``
        evenly spaced frames give the backdrop's colour, the person's colours and ``frames_share``."""
        from scipy.cluster.vq import kmeans2

        from .reconstruct.data import BACKDROP_MIN_CONTRAST, CHIN, dilate, erode, project_landmarks

        idx = torch.linspace(0, len(data) - 1, min(frames, len(data))).round().long().unique()
        img, head = data.images[idx].cpu().float(), data.head[idx].cpu().float()
        chin = project_landmarks(data.K[idx].cpu().float(), data.world_to_cam[idx].cpu().float(),
                                 data.landmarks3d[idx][:, CHIN:CHIN + 1].cpu().float())[:, 0, 1]
        above = (torch.arange(img.shape[1])[None, :] < chin[:, None]).float()[:, :, None, None]  # (N,H,1,1)
        off = 1 - dilate(data.masks[idx].cpu(), 3)
        inner = erode(head, 3) * above
        back = img[off[..., 0] > 0.5]
        person = img[inner[..., 0] > 0.5].numpy().astype(np.float64)
        self.backdrop = self.palette = None
        if len(back) and len(person) >= self.COLOURS:
            self.backdrop = back.median(0).values.numpy().astype(np.float64)
            sample = person[np.random.default_rng(0).permutation(len(person))[:20000]]
            self.palette, _ = kmeans2(sample, self.COLOURS, seed=0, minit="++")
        gap = None if self.backdrop is None else float(np.linalg.norm(self.palette - self.backdrop, axis=1).min())
        self.measurable = gap is not None and gap >= BACKDROP_MIN_CONTRAST
        self.frames_share = None
        if self.measurable:
            self.frames_share = float(np.mean([self.share(img[k].numpy(), (head[k] * above[k]).numpy())
                                               for k in range(len(idx))]))

    def mix(self, colours: np.ndarray) -> np.ndarray:
        """(P,3) colours -> (P,) share of the backdrop's colour: each colour explained as the
        nearest mix ``(1 - t) p + t b`` of one of the person's colours ``p`` and the backdrop ``b``."""
        c = np.asarray(colours, np.float64)[:, None, :]
        p = self.palette[None]
        d = self.backdrop[None, None] - p
        t = np.clip(((c - p) * d).sum(-1) / (d * d).sum(-1), 0, 1)
        resid = ((c - (p + t[..., None] * d)) ** 2).sum(-1)
        return t[np.arange(len(c)), resid.argmin(1)]

    def share(self, image: np.ndarray, alpha: np.ndarray, background=None, rows: int | None = None) -> float | None:
        """Share of the pixels of ``image`` (H,W,3) with ``alpha`` (H,W) > 0.5, above row ``rows``
        when given, that hold more than :data:`TINTED` of the backdrop's colour (:meth:`mix`);
        ``background``: the colour ``image`` was composited on with ``alpha`` (None: not composited)."""
        if not self.measurable:
            return None
        c = np.asarray(image, np.float64)
        a = np.asarray(alpha, np.float64).reshape(c.shape[:2])
        if background is not None:
            c = (c - (1 - a[..., None]) * np.asarray(background, np.float64)) / np.clip(a, 1e-6, None)[..., None]
        sel = a > 0.5
        if rows is not None:
            sel[max(0, int(rows)):] = False
        return float((self.mix(np.clip(c[sel], 0, 1)) > self.TINTED).mean()) if sel.any() else None


@torch.no_grad()
def yaw_sweep(target, yaws=DEFAULT_YAWS, *, edit: str | None = None, expression=None, sheet: str | Path | None = None,
              scale: float = 1.0) -> dict:
    """Render the avatar turned by each yaw (degrees) and track the renders with MediaPipe (module doc).

    Returns ``{"yaws", "detected" (list of bool), "detection_rate", "tracked_yaw" (None where no
    face), "yaw_error" (|tracked - requested| per yaw), "mean_yaw_error", "backdrop"}``
    (``backdrop``: :class:`BackdropCheck` of the renders, ``{"colour", "frames", "per_yaw",
    "mean"}``, None for an avatar without its work folder); ``sheet`` writes the renders side by
    side (a red frame marks a render where no face was found).
    """
    import cv2

    from .animate import head_pivot, load_scene, orbit_poses
    from .edit.metrics import LandmarkDetector
    from .workdir import write_image

    scene = load_scene(target, edit)
    e = scene.neutral_expression if expression is None else torch.as_tensor(expression, dtype=torch.float32)
    pivot = head_pivot(scene.avatar)
    ref = scene.ref_pose.numpy()
    imgs, alphas, chins, rots = [], [], [], []
    with LandmarkDetector() as det:
        for y in yaws:
            P = orbit_poses(ref, pivot, 2, 2 * abs(float(y)), "turn")[1 if y >= 0 else 0] if y else ref
            img, alpha = scene.render(e, torch.from_numpy(np.asarray(P)).float(), scale, with_alpha=True)
            pts, R = det.detect(img, with_pose=True)
            imgs.append(img)
            alphas.append(alpha)
            chins.append(_chin_row(scene, P, scale))
            rots.append(R if pts is not None else None)
    yaws = [float(y) for y in yaws]
    base = rots[yaws.index(0.0)] if 0.0 in yaws and rots[yaws.index(0.0)] is not None else None
    tracked, err = [], []
    for y, R in zip(yaws, rots):
        if R is None or base is None:
            tracked.append(None)
            err.append(None)
            continue
        t = yaw_of(base.T @ R)
        tracked.append(t)
        err.append(abs(t - y))
    det_flags = [R is not None for R in rots]
    errs = [x for x in err if x is not None]
    res = {"yaws": yaws, "detected": det_flags, "detection_rate": float(np.mean(det_flags)), "tracked_yaw": tracked,
           "yaw_error": err, "mean_yaw_error": float(np.mean(errs)) if errs else None,
           "backdrop": _backdrop_of_renders(scene, imgs, alphas, chins)}
    if sheet is not None:
        tiles = []
        for y, img, ok in zip(yaws, imgs, det_flags):
            t = (np.clip(img, 0, 1) * 255).astype(np.uint8).copy()
            if not ok:
                cv2.rectangle(t, (1, 1), (t.shape[1] - 2, t.shape[0] - 2), (220, 30, 30), 3)
            cv2.putText(t, f"{y:+.0f}", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2, cv2.LINE_AA)
            tiles.append(t)
        res["sheet"] = str(write_image(sheet, np.concatenate(tiles, 1)))
    return res


def format_sweep(r: dict) -> str:
    """One line per yaw of :func:`yaw_sweep`'s result, then its summary."""
    lines = ["turned away (MediaPipe on the renders; backdrop share: pixels holding over a quarter of the "
             "backdrop's colour):"]
    b = r.get("backdrop") or {}
    per = b.get("per_yaw") or [None] * len(r["yaws"])
    for y, found, t, share in zip(r["yaws"], r["detected"], r["tracked_yaw"], per):
        seen = "no face" if not found else ("face found" if t is None else f"face found, tracked yaw {t:+.1f} deg")
        back = "" if share is None else f", backdrop {share:.1%}"
        lines.append(f"  {y:+4.0f} deg: {seen}{back}")
    err = "" if r["mean_yaw_error"] is None else f", mean |tracked - requested yaw| {r['mean_yaw_error']:.1f} deg"
    lines.append(f"  face found at {sum(r['detected'])} of {len(r['yaws'])} yaws{err}")
    if b.get("mean") is not None:
        lines.append(f"  backdrop share {b['mean']:.1%} (the training frames: {b['frames']:.1%})")
    elif b:
        lines.append("  backdrop share: not measured (the backdrop has the person's colours)")
    return "\n".join(lines)


def _chin_row(scene, world_to_cam, scale: float) -> float:
    """Image row of the avatar's chin landmark seen from ``world_to_cam``."""
    from .reconstruct.data import CHIN, project_landmarks

    cam = scene.camera(torch.as_tensor(np.asarray(world_to_cam)).float(), scale)
    lm = scene.avatar.landmarks[CHIN:CHIN + 1].detach().cpu().float()[None]
    return float(project_landmarks(cam.K[None].float(), cam.world_to_cam[None].float(), lm)[0, 0, 1])


def _backdrop_of_renders(scene, imgs, alphas, chins) -> dict | None:
    """:class:`BackdropCheck` of the yaw sweep's renders above the chin (None without the
    avatar's work folder)."""
    if scene.work is None:
        return None
    from .preprocess import load_dataset
    from .reconstruct.data import from_options
    from .workfolder import WorkFolder

    check = BackdropCheck(from_options(load_dataset(scene.work), WorkFolder(scene.work).data_options(scene.avatar)))
    per = [check.share(i, a, scene.background, rows=c) for i, a, c in zip(imgs, alphas, chins)]
    ok = [p for p in per if p is not None]
    return {"colour": None if check.backdrop is None else [round(float(c), 4) for c in check.backdrop],
            "frames": check.frames_share, "per_yaw": per, "mean": float(np.mean(ok)) if ok else None}
