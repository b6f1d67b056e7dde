"""dlib face-identity embedding (styletalker.identity) on the real sample videos: two people."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from styletalker.identity import EMBEDDING_SIZE, SAME_PERSON_DISTANCE, face_embedding, identity_distance
from styletalker.video import iter_frames

pytest.importorskip("dlib")


def _frames(path, start, n):
    return [f for _, _, f in iter_frames(path, start=start, fps=1, max_frames=n)]


@pytest.fixture(scope="module")
def faces(franck_video, driver_video):
    """Three frames of franck (10 s and 100 s apart in the clip) and two of the driver (another man)."""
    return {"franck": _frames(franck_video, 10.0, 2) + _frames(franck_video, 100.0, 1),
            "driver": _frames(driver_video, 0.0, 2)}


def test_same_person_close_other_person_far(faces):
    emb = {k: [face_embedding(f) for f in v] for k, v in faces.items()}
    for v in emb.values():
        for e in v:
            assert e is not None and e.shape == (EMBEDDING_SIZE,) and np.isfinite(e).all()
    same = [identity_distance(a, b) for v in emb.values() for a, b in itertools.combinations(v, 2)]
    other = [identity_distance(a, b) for a in emb["franck"] for b in emb["driver"]]
    # measured: same person 0.18-0.42, other person 0.78-0.86
    assert max(same) < SAME_PERSON_DISTANCE < min(other)
    assert max(same) < 0.5 and min(other) > 0.7
    assert identity_distance(emb["franck"][0], emb["franck"][0]) == 0.0


def test_small_and_float_images(faces):
    img = faces["franck"][0]
    ref = face_embedding(img)
    # a 128 px head crop (the preprocessed size) is upscaled for the detector and still matches
    h, w = img.shape[:2]
    small = cv2.resize(img, (w * 128 // h, 128), interpolation=cv2.INTER_AREA)
    e_small = face_embedding(small)
    assert e_small is not None and identity_distance(ref, e_small) < 0.35
    # [0, 1] float input gives the same embedding as uint8
    assert np.allclose(face_embedding(img.astype(np.float32) / 255.0), ref, atol=1e-6)


def test_no_face_and_bad_input():
    assert face_embedding(np.full((160, 160, 3), 128, np.uint8)) is None
    rng = np.random.default_rng(0)
    assert face_embedding(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)) is None
    with pytest.raises(ValueError):
        face_embedding(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        identity_distance(np.zeros(128), np.zeros(64))
