"""Drawing for the checking video: landmarks, mask outline, head pose axes."""

from __future__ import annotations

import numpy as np

from .geometry import project


def draw_overlay(img: np.ndarray, mask: np.ndarray, lm2d: np.ndarray, K: np.ndarray, w2c: np.ndarray,
                 *, min_size: int = 256, axis_len: float = 0.6, occluder: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 image (upscaled to at least ``min_size``) with the mask outline (cyan), the
    landmarks (green, irises yellow), the canonical axes x/y/z (red/green/blue) and an occluder
    mask (hands, left out of training) tinted magenta drawn."""
    import cv2

    s = max(1, int(np.ceil(min_size / img.shape[0])))
    out = img if s == 1 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    out = np.ascontiguousarray(out.copy())
    if occluder is not None and occluder.any():
        o = occluder if s == 1 else cv2.resize(occluder, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
        out[o > 127] = (0.5 * out[o > 127] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
    m = mask if s == 1 else cv2.resize(mask, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours((m > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 255, 255), 1, lineType=cv2.LINE_AA)
    pts = lm2d * s
    for k, (x, y) in enumerate(pts):
        col = (255, 255, 0) if k >= 468 else (0, 255, 0)
        cv2.circle(out, (int(x), int(y)), 1, col, -1)
    axes = np.array([[0, 0, 0], [axis_len, 0, 0], [0, axis_len, 0], [0, 0, axis_len]], dtype=np.float64)
    uv = project(K, w2c, axes) * s
    o = tuple(int(v) for v in uv[0])
    for k, col in zip(range(1, 4), [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        cv2.line(out, o, tuple(int(v) for v in uv[k]), col, 2, lineType=cv2.LINE_AA)
    return out
