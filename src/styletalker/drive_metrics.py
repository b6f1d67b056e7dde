"""Measures of a driven avatar (bench/drive.py, docs/animate.md): does it stay a clean, recognisable
face that follows the driver?

* :func:`speckle_score`: holes and isolated dots inside the avatar's silhouette. Inside the
  silhouette (alpha > 0.5, holes filled, eroded by ``margin`` pixels), the fraction of pixels that
  are either see-through (alpha < 0.5: a hole) or stand out from their 5x5 neighbourhood's median
  by more than ``threshold`` in some colour channel (a dot). A clean render scores a few percent
  (eyes, lips and hair strands are real local contrast), so the score is read against the same
  avatar's neutral render.
* :func:`temporal_flicker`: mean |frame_t - median(frame_{t-1}, frame_t, frame_{t+1})| inside the
  silhouette: frame-to-frame noise that smooth motion does not explain.
* :func:`channel_correlation`: Pearson correlation of a blendshape channel tracked on the avatar's
  frames with the driver's, where the driver's channel varies (std >= ``min_std``).
"""

from __future__ import annotations

import numpy as np

CHANNELS = {"jawOpen": ("jawOpen",), "eyeBlink": ("eyeBlinkLeft", "eyeBlinkRight"),
            "mouthSmile": ("mouthSmileLeft", "mouthSmileRight")}


def _interior(alpha: np.ndarray, margin: int) -> np.ndarray:
    import cv2
    from scipy import ndimage

    sil = ndimage.binary_fill_holes(alpha > 0.5)
    if margin > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        sil = cv2.erode(sil.astype(np.uint8), k).astype(bool)
    return sil


def speckle_score(image: np.ndarray, alpha: np.ndarray, threshold: float = 0.2, margin: int = 3) -> float:
    """Fraction of interior pixels that are holes or isolated dots (module doc). ``image`` (H,W,3)
    float in [0,1], ``alpha`` (H,W) or (H,W,1)."""
    import cv2

    a = np.asarray(alpha, np.float32).reshape(image.shape[:2])
    inside = _interior(a, margin)
    if not inside.any():
        return 1.0
    img = np.asarray(image, np.float32)
    med = cv2.medianBlur((np.clip(img, 0, 1) * 255).astype(np.uint8), 5).astype(np.float32) / 255
    dots = np.abs(img - med).max(-1) > threshold
    holes = a < 0.5
    return float(((dots | holes) & inside).sum() / inside.sum())


def temporal_flicker(frames: np.ndarray, alphas: np.ndarray, margin: int = 3) -> float:
    """Mean |I_t - median(I_{t-1}, I_t, I_{t+1})| over interior pixels of frames (T,H,W,3)."""
    f = np.asarray(frames, np.float32)
    if len(f) < 3:
        return 0.0
    med = np.median(np.stack([f[:-2], f[1:-1], f[2:]]), axis=0)
    out = []
    for t in range(1, len(f) - 1):
        inside = _interior(np.asarray(alphas[t], np.float32).reshape(f.shape[1:3]), margin)
        if inside.any():
            out.append(float(np.abs(f[t] - med[t - 1]).mean(-1)[inside].mean()))
    return float(np.mean(out)) if out else 0.0


def channel_values(expression: np.ndarray, names: list[str], channel: str) -> np.ndarray:
    """A named channel group (:data:`CHANNELS`) of expressions (T,E): the mean of its members."""
    idx = [names.index(n) for n in CHANNELS[channel]]
    return np.asarray(expression, np.float64)[:, idx].mean(1)


def channel_correlation(avatar_values: np.ndarray, driver_values: np.ndarray, min_std: float = 0.05) -> float | None:
    """Pearson correlation over frames where both are known (``nan`` = avatar face not found);
    ``None`` when the driver's channel hardly varies (std < ``min_std``)."""
    a = np.asarray(avatar_values, np.float64)
    d = np.asarray(driver_values, np.float64)
    ok = np.isfinite(a) & np.isfinite(d)
    if ok.sum() < 3 or d[ok].std() < min_std:
        return None
    if a[ok].std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a[ok], d[ok])[0, 1])
