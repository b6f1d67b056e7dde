"""Person mask: MediaPipe selfie segmentation + clean-up that makes it robust for head avatars."""

from __future__ import annotations

import numpy as np

# MediaPipe face-oval landmark ids (silhouette), in order around the face.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]


def face_oval_mask(face_lm: np.ndarray, shape) -> np.ndarray:
    """uint8 0/1 mask of the face-oval polygon of a frame's landmarks (crop pixels) in an image of
    ``shape`` (H, W)."""
    import cv2

    face = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(face_lm[FACE_OVAL, :2] - 0.5).astype(np.int32)], 1)
    return face


def person_mask(segmenter, crop_rgb: np.ndarray, size: int, face_lm: np.ndarray, *, threshold: float = 0.5,
                valid: np.ndarray | None = None) -> np.ndarray:
    """uint8 (size,size) mask, 0/255, of the person in ``crop_rgb`` (the square crop at any
    resolution; segmented at that resolution, then resized).

    Clean-up: the face-oval polygon of the landmarks (crop pixels at ``size``) is always
    foreground; only the connected component touching the face is kept; holes are filled;
    pixels outside ``valid`` (padding beyond the source frame) are background.
    """
    import cv2
    from scipy import ndimage

    res = segmenter.process(np.ascontiguousarray(crop_rgb))
    prob = res.segmentation_mask
    if prob is None:
        prob = np.zeros(crop_rgb.shape[:2], np.float32)
    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape[0] != size:
        prob = cv2.resize(prob, (size, size), interpolation=cv2.INTER_AREA if prob.shape[0] > size else cv2.INTER_LINEAR)
    m = (prob > threshold).astype(np.uint8)
    face = face_oval_mask(face_lm, m.shape)
    m |= face
    lab, n = ndimage.label(m)
    if n > 1:
        ids = np.unique(lab[face > 0])
        ids = ids[ids > 0]
        m = np.isin(lab, ids).astype(np.uint8)
    m = ndimage.binary_fill_holes(m).astype(np.uint8)
    if valid is not None:
        m &= valid.astype(np.uint8)
    return m * 255
