"""Face identity embedding: dlib's face-recognition ResNet (the model behind `face_recognition`).

    from styletalker.identity import face_embedding, identity_distance, SAME_PERSON_DISTANCE
    a = face_embedding(img_a)            # (128,) float64, or None when no face is found
    b = face_embedding(img_b)
    same = identity_distance(a, b) < SAME_PERSON_DISTANCE

Images are RGB, uint8 (H, W, 3) (float images in [0, 1] are accepted too). The largest face found
by dlib's HOG frontal-face detector is aligned with the 5-point shape predictor and embedded with
``dlib_face_recognition_resnet_model_v1`` (128-d, unit-scale). Distances are Euclidean; dlib's
model was trained so that two photos of one person are closer than 0.6 (99.38 % on LFW).

Small images are upscaled (cubic) so that the long side is at least :data:`DETECT_MIN_SIZE`
pixels before detection: the HOG detector misses faces under ~80 px.

The weights come from the PyPI packages ``dlib-bin`` (dlib itself) and
``face-recognition-models`` (the ``.dat`` files); nothing is downloaded. When either is missing,
:func:`load_models` raises :class:`~styletalker.errors.MissingModelError` saying how to install it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from .errors import MissingModelError

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold: smaller = same person
DETECT_MIN_SIZE = 384  # long side (pixels) images are upscaled to before face detection
EMBEDDING_SIZE = 128

_INSTALL = "pip install dlib-bin face-recognition-models (part of `make setup`)"


def models_folder() -> Path:
    """The folder of the ``face-recognition-models`` package's ``.dat`` files (found without importing
    the package, whose ``__init__`` needs the removed ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(f"the identity metric needs dlib's face-recognition weights: {_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
        if not (folder / name).is_file():
            raise MissingModelError(f"{folder / name} is missing; reinstall: {_INSTALL}")
    return folder


@functools.lru_cache(maxsize=1)
def load_models():
    """(detector, shape_predictor, face_recognition_model), loaded once per process."""
    try:
        import dlib
    except ImportError as e:
        raise MissingModelError(f"the identity metric needs dlib ({e}): {_INSTALL}") from None
    folder = models_folder()
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")))


def _as_uint8_rgb(image) -> np.ndarray:
    from .workdir import to_uint8

    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = to_uint8(np.asarray(image))
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {a.shape}")
    return np.ascontiguousarray(a)


def face_embedding(image, *, jitter: int = 0) -> np.ndarray | None:
    """128-d identity embedding of the largest face in ``image`` (RGB, uint8 or [0, 1] float);
    ``None`` when no face is detected. ``jitter`` > 0 averages over that many randomly jittered
    crops (dlib's ``num_jitters``: slower, slightly more stable)."""
    import cv2

    det, shape, rec = load_models()
    a = _as_uint8_rgb(image)
    H, W = a.shape[:2]
    s = max(1.0, DETECT_MIN_SIZE / max(H, W))
    if s > 1:
        a = cv2.resize(a, (int(round(W * s)), int(round(H * s))), interpolation=cv2.INTER_CUBIC)
    faces = det(a, 0)
    if len(faces) == 0:
        faces = det(a, 1)  # one more pyramid level up for small faces
    if len(faces) == 0:
        return None
    face = max(faces, key=lambda r: r.width() * r.height())
    desc = rec.compute_face_descriptor(a, shape(a, face), int(jitter))
    return np.asarray(desc, dtype=np.float64)


def identity_distance(a, b) -> float:
    """Euclidean distance between two embeddings of :func:`face_embedding` (< 0.6: same person)."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != (EMBEDDING_SIZE,) or b.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"expected two {EMBEDDING_SIZE}-d embeddings, got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b))
