"""Edit metrics (paper Fig. 6 ablation, measured instead of shown):

* **region change**: mean absolute difference (over RGB, values in [0, 1]) between the edited
  avatar's render and the unedited avatar's render of the same view (pose + expression), inside the
  face region (face oval of the view's landmarks) and outside it (valid pixels only), plus a
  breakdown: identity features (eyes, brows, lips, nose), skin, hair, neck, background.
* **landmark displacement**: the MediaPipe face landmarker is run on both renders (upscaled so the
  face is large enough for the detector); the mean distance between the 478 landmark pairs, in
  pixels of the render and in percent of the face width. Views where the detector finds no face
  in the edited render are counted as failures (``lmk_fail_edit``); views where it fails on the
  unedited render are skipped (``lmk_fail_ref``).
"""

from __future__ import annotations

import numpy as np

from .regions import FaceInfo

DETECT_MIN_SIZE = 384  # renders are upscaled to at least this many pixels before detection


class LandmarkDetector:
    """MediaPipe Tasks face landmarker on single images (IMAGE mode, one face)."""

    def __init__(self, model_path=None):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        from ..assets import face_landmarker_path

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(face_landmarker_path(model_path))),
            running_mode=vision.RunningMode.IMAGE, num_faces=1,
            output_face_blendshapes=True, output_facial_transformation_matrixes=True,
            min_face_detection_confidence=0.3, min_face_presence_confidence=0.3,
        )
        self._mp = mp
        from ..native_log import quiet_native_stderr

        with quiet_native_stderr():
            self._lm = vision.FaceLandmarker.create_from_options(opts)

    def close(self):
        self._lm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def detect(self, img, with_blendshapes: bool = False, with_pose: bool = False):
        """(H,W,3) float [0,1] or uint8 -> (478,2) pixel coords in ``img`` (None if no face).

        ``with_blendshapes`` / ``with_pose`` add the 52 blendshape scores and the head rotation
        (3,3, canonical head space -> camera, OpenCV axes as in preprocessing) to the result tuple.
        """
        import cv2

        from ..workdir import to_uint8

        a = to_uint8(img)
        H, W = a.shape[:2]
        s = max(1.0, DETECT_MIN_SIZE / max(H, W))
        if s > 1:
            a = cv2.resize(a, (int(round(W * s)), int(round(H * s))), interpolation=cv2.INTER_CUBIC)
        res = self._lm.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(a)))
        extra = int(with_blendshapes) + int(with_pose)
        if not res.face_landmarks:
            return (None,) * (1 + extra) if extra else None
        h, w = a.shape[:2]
        pts = np.array([[p.x * w, p.y * h] for p in res.face_landmarks[0]], np.float64) / s
        if not extra:
            return pts
        out = [pts]
        if with_blendshapes:
            out.append(np.array([c.score for c in res.face_blendshapes[0]], np.float32) if res.face_blendshapes else None)
        if with_pose:
            from ..preprocess.mp_models import gl_pose_to_cv

            mats = res.facial_transformation_matrixes
            out.append(gl_pose_to_cv(np.asarray(mats[0], np.float64))[:3, :3] if mats else None)
        return tuple(out)


def region_change(edited: np.ndarray, reference: np.ndarray, face: FaceInfo, valid: np.ndarray | None = None) -> dict:
    """Mean |edited - reference| inside/outside the face and per region (see module doc)."""
    H, W = reference.shape[:2]
    diff = np.abs(np.asarray(edited, np.float64) - np.asarray(reference, np.float64)).mean(axis=-1)
    reg = face.regions((H, W))
    v = np.ones((H, W)) if valid is None else (np.asarray(valid).reshape(H, W) > 0.5).astype(np.float64)

    def mean_in(m):
        m = (np.asarray(m) > 0.5) * v
        return float((diff * m).sum() / m.sum()) if m.sum() > 0 else float("nan")

    face_m = reg["face"]
    out = {
        "inside_face": mean_in(face_m),
        "outside_face": mean_in(1 - face_m),
        "features": mean_in(reg["features"]),
        "skin": mean_in(reg["skin"] * face_m),
        "hair": mean_in(reg["hair"]),
        "neck": mean_in(reg["neck"]),
        "background": mean_in(reg["background"]),
    }
    return out


def landmark_displacement(det: LandmarkDetector, edited: np.ndarray, reference: np.ndarray) -> dict:
    ref = det.detect(reference)
    if ref is None:
        return {"status": "ref_fail"}
    ed = det.detect(edited)
    if ed is None:
        return {"status": "edit_fail"}
    d = np.linalg.norm(ed - ref, axis=1)
    fw = float(np.linalg.norm(ref[454] - ref[234]))
    return {"status": "ok", "px": float(d.mean()), "pct_face_width": float(100 * d.mean() / max(fw, 1e-6))}


def summarize(per_view: list[dict]) -> dict:
    """Average the per-view numbers; count landmark-detection failures."""
    keys = ["inside_face", "outside_face", "features", "skin", "hair", "neck", "background"]
    out: dict = {}
    for k in keys:
        vals = [p[k] for p in per_view if k in p and np.isfinite(p[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    out["inside_outside_ratio"] = out["inside_face"] / max(out["outside_face"], 1e-9)
    lm = [p["landmarks"] for p in per_view if "landmarks" in p]
    ok = [x for x in lm if x["status"] == "ok"]
    out["landmark_px"] = float(np.mean([x["px"] for x in ok])) if ok else float("nan")
    out["landmark_pct_face_width"] = float(np.mean([x["pct_face_width"] for x in ok])) if ok else float("nan")
    out["lmk_views"] = len(lm)
    out["lmk_fail_edit"] = sum(1 for x in lm if x["status"] == "edit_fail")
    out["lmk_fail_ref"] = sum(1 for x in lm if x["status"] == "ref_fail")
    out["views"] = len(per_view)
    return out


def evaluate_edit(avatar_ref, avatar_edit, data, views=None, detector: LandmarkDetector | None = None,
                  scale: float = 1.0) -> dict:
    """Compare renders of two avatars on ``views`` of :class:`~styletalker.reconstruct.data.ReconData` (default: held-out views).

    ``scale`` renders at a higher resolution (intrinsics scaled) for the landmark detector;
    region changes are always measured at the data resolution.
    """
    import torch


    if views is None:
        views = data.test_idx.tolist() or data.train_idx.tolist()[:4]
    own = detector is None
    det = LandmarkDetector() if own else detector
    bg = torch.tensor(data.background)
    per_view = []
    try:
        for i in views:
            i = int(i)
            cam = data.camera(i)
            with torch.no_grad():
                r0 = avatar_ref.render(data.expression[i], cam, background=bg).image.numpy()
                r1 = avatar_edit.render(data.expression[i], cam, background=bg).image.numpy()
            v = data.valid[i, ..., 0].numpy()
            r0 = r0 * v[..., None] + np.asarray(data.background) * (1 - v[..., None])
            r1 = r1 * v[..., None] + np.asarray(data.background) * (1 - v[..., None])
            rec = region_change(r1, r0, data.face(i), v)
            if scale != 1.0:
                big = data.camera(i, scale)
                with torch.no_grad():
                    r0 = avatar_ref.render(data.expression[i], big, background=bg).image.numpy()
                    r1 = avatar_edit.render(data.expression[i], big, background=bg).image.numpy()
            rec["landmarks"] = landmark_displacement(det, r1, r0)
            if rec["landmarks"].get("px") is not None:
                rec["landmarks"]["px"] /= scale
            rec["view"] = i
            per_view.append(rec)
    finally:
        if own:
            det.close()
    return {"summary": summarize(per_view), "per_view": per_view}
