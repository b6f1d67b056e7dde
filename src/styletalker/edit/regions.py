"""Face regions from the 478 MediaPipe face landmarks and a person mask.

Used by the built-in editor (where to apply a style) and by the edit metrics (what counts as
"inside the face"). All masks are float32 ``(H, W)`` arrays in [0, 1]; polygons are filled with
OpenCV (a mediapipe dependency) at sub-pixel precision.

Regions (see docs/edit.md):

* ``face``     face oval (forehead to chin, cheek to cheek)
* ``eyes``     both eye openings;  ``iris`` both irises (landmarks 468..477)
* ``brows``    both eyebrows;      ``lips`` the lips (outer lip line minus the mouth opening)
* ``mouth``    the mouth opening;  ``nose`` convex hull of the nose landmarks
* ``features`` eyes + brows + lips + nose: the identity-carrying parts of the face
* ``skin``     face minus eyes, brows, lips and mouth opening, plus the neck
* ``neck``     person mask just below the jaw, about as wide as the jaw
* ``hair``     person mask above the mouth line, near the head, outside the face oval
* ``clothing`` person mask below the jaw that is not neck
* ``head``     face + hair + neck (what "statue" prompts restyle)
* ``background`` outside the person mask
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

# Ordered landmark loops (MediaPipe face mesh topology, see mediapipe face_mesh_connections).
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_BROW = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70]
LEFT_BROW = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300]
NOSE = [1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327,
        344, 440]
RIGHT_IRIS = [468, 469, 470, 471, 472]  # centre first
LEFT_IRIS = [473, 474, 475, 476, 477]
NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10
FACE_LEFT, FACE_RIGHT = 234, 454  # image-left / image-right cheek extremes of a frontal face

REGION_NAMES = ("face", "eyes", "iris", "brows", "lips", "mouth", "nose", "features", "skin", "neck",
                "hair", "clothing", "head", "person", "background")

_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def fill_polygon(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Anti-aliased-free binary fill of polygon ``pts`` (K,2) pixel coords -> float32 (H,W)."""
    import cv2

    m = np.zeros(shape, np.uint8)
    p = np.round((np.asarray(pts, np.float64) - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(m, [p.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return m.astype(np.float32)


def fill_hull(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    import cv2

    hull = cv2.convexHull(np.asarray(pts, np.float32)).reshape(-1, 2)
    return fill_polygon(shape, hull)


def fill_circle(shape: tuple[int, int], centre, radius: float) -> np.ndarray:
    H, W = shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
    return (((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) <= radius * radius).astype(np.float32)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation with a disc of ``radius`` pixels (no-op for radius < 0.5)."""
    import cv2

    r = int(round(radius))
    if r < 1:
        return mask.astype(np.float32)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.float32), k)


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soft edges: Gaussian blur of a mask by ``sigma`` pixels."""
    import cv2

    if sigma < 0.3:
        return mask.astype(np.float32)
    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma), 0.0, 1.0)


@dataclass
class FaceInfo:
    """What an editor knows about the face in an image.

    landmarks: (478, 2) pixel coordinates (x, y) of the MediaPipe face landmarks (468 mesh + 10
        iris); pixel (u, v) has its centre at (u + 0.5, v + 0.5) as everywhere in StyleTalker.
    mask: optional (H, W) person mask in [0, 1] (selfie segmentation); estimated from the face
        when missing.
    """

    landmarks: np.ndarray
    mask: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        lm = np.asarray(self.landmarks, np.float64)
        if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 468:
            raise InputError(f"face landmarks must be (478, 2) pixel coordinates, got {lm.shape}")
        if not np.all(np.isfinite(lm[:468])):
            raise InputError("face landmarks contain NaN/inf (no face detected in this image?)")
        self.landmarks = lm

    @property
    def face_width(self) -> float:
        lm = self.landmarks
        return float(np.linalg.norm(lm[FACE_RIGHT] - lm[FACE_LEFT]))

    @property
    def face_height(self) -> float:
        lm = self.landmarks
        return float(np.linalg.norm(lm[CHIN] - lm[FOREHEAD]))

    def regions(self, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """All named regions (see module docstring) as binary float32 (H, W) masks."""
        key = tuple(shape)
        if key not in self._cache:
            self._cache[key] = compute_regions(self.landmarks, shape, self.mask)
        return self._cache[key]


def compute_regions(lm: np.ndarray, shape: tuple[int, int], person: np.ndarray | None = None) -> dict[str, np.ndarray]:
    H, W = shape
    lm = np.asarray(lm, np.float64)
    fw = float(np.linalg.norm(lm[FACE_RIGHT] - lm[FACE_LEFT]))
    fh = float(np.linalg.norm(lm[CHIN] - lm[FOREHEAD]))
    face = fill_polygon(shape, lm[FACE_OVAL])
    eyes = np.maximum(fill_polygon(shape, lm[RIGHT_EYE]), fill_polygon(shape, lm[LEFT_EYE]))
    brows = np.maximum(fill_polygon(shape, lm[RIGHT_BROW]), fill_polygon(shape, lm[LEFT_BROW]))
    mouth = fill_polygon(shape, lm[LIPS_INNER])
    lips = np.clip(fill_polygon(shape, lm[LIPS_OUTER]) - mouth, 0, 1)
    nose = fill_hull(shape, lm[NOSE])
    iris = np.zeros(shape, np.float32)
    if lm.shape[0] >= 478 and np.all(np.isfinite(lm[468:478])):
        for idx in (RIGHT_IRIS, LEFT_IRIS):
            c = lm[idx[0]]
            r = float(np.mean(np.linalg.norm(lm[idx[1:]] - c, axis=1)))
            iris = np.maximum(iris, fill_circle(shape, c, r) * eyes)
    features = np.clip(eyes + brows + lips + mouth + nose, 0, 1)

    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
    # "down" direction of the face (forehead -> chin) handles tilted heads
    down = (lm[CHIN] - lm[FOREHEAD]) / max(fh, 1e-6)
    right = np.array([-down[1], down[0]])  # perpendicular
    centre = lm[FACE_OVAL].mean(axis=0)
    u = (xs - centre[0]) * right[0] + (ys - centre[1]) * right[1]  # across the face
    v = (xs - centre[0]) * down[0] + (ys - centre[1]) * down[1]  # along forehead -> chin
    v_chin = float(np.dot(lm[CHIN] - centre, down))
    v_mouth = float(np.dot(lm[13] - centre, down))

    if person is None:
        # no segmentation: the face, a head-sized ellipse above it and shoulders below the chin
        head = ((u / (0.65 * fw)) ** 2 + ((v + 0.15 * fh) / (0.75 * fh)) ** 2) <= 1.0
        body = (v > v_chin) & (np.abs(u) < 1.3 * fw + (v - v_chin) * 1.5)
        person = np.maximum(face, (head | body).astype(np.float32))
    person = np.clip(np.asarray(person, np.float32), 0, 1)
    if person.shape != tuple(shape):
        raise ValueError(f"person mask has shape {person.shape}, image is {tuple(shape)}")
    person_b = (person > 0.5).astype(np.float32)

    below_jaw = (v > v_mouth) & (face < 0.5)
    neck = (below_jaw & (np.abs(u) < 0.32 * fw) & (v < v_chin + 0.45 * fh)).astype(np.float32) * person_b
    near_head = (np.abs(u) < 0.85 * fw) & (v < v_mouth) & (v > -1.3 * fh)
    hair = (near_head & (face < 0.5)).astype(np.float32) * person_b
    clothing = np.clip(person_b * below_jaw - neck, 0, 1).astype(np.float32)
    skin = np.clip(face - eyes - brows - lips - mouth, 0, 1) + neck
    head_r = np.clip(face + hair + neck, 0, 1)
    return {
        "face": face, "eyes": eyes, "iris": iris, "brows": brows, "lips": lips, "mouth": mouth,
        "nose": nose, "features": features, "skin": np.clip(skin, 0, 1), "neck": neck, "hair": hair,
        "clothing": clothing, "head": head_r, "person": person_b, "background": 1.0 - person_b,
    }
