"""Hands in front of the face (occluders): MediaPipe Hands, tracked over the kept frames.

A hand on the face is part of the selfie segmentation's person mask, so without this the avatar
learns the hand as part of the head, and a neutral frame chosen with a hand at the mouth paints it
into every prior view. The kept frames' crops go through MediaPipe Hands (bundled with
mediapipe's legacy solutions, like the selfie segmentation) in tracking mode, in order and in one
go (an interrupted run redoes them all: tracking restarted mid-clip would lose a hand): a
hand lying on a face is hard for its palm detector alone (one clip: 5 of 36 such frames found one
by one, 36 of 36 tracked). A hand's region is the convex hull of its 21 landmarks grown by
``GROW`` x its palm length (wrist to the middle finger's knuckle): the landmarks lie on the
fingers' centre lines. A hand whose wrist lies inside the face oval is not taken: the palm
detector now and then takes a part of the face for a palm (franck.webm, looking down: 3 of 40
frames, wrist 0.12-0.23 face widths inside the oval), while a hand held in front of the face comes
with its wrist and arm from outside it (the Pexels clip: 0.37-0.48 face widths below the chin in
all 15 frames). ``occluders/%06d.png`` holds it per frame (docs/FORMATS.md); training and
scoring leave those pixels out (:func:`styletalker.reconstruct.data.from_dataset`), and the
neutral frame is chosen among the frames without a hand over the face.
"""

from __future__ import annotations

import numpy as np

GROW = 0.2  # a finger's half width and the landmarks' error, in palm lengths
WRIST, MIDDLE_KNUCKLE = 0, 9


def hand_region(points: np.ndarray, size: int) -> np.ndarray:
    """uint8 (size,size) 0/1 region of one hand from its 21 landmarks (crop pixels)."""
    import cv2

    grow = GROW * float(np.linalg.norm(points[MIDDLE_KNUCKLE] - points[WRIST]))
    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    r = int(np.ceil(grow))
    if r > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return m


class HandMasker:
    """``masker(crop_rgb, size, face_lm) -> uint8 (size,size) mask, 0/255``: the hands in front of
    one frame (module doc). Call it on the frames in their order (tracking); ``close()`` when done."""

    def __init__(self):
        from mediapipe.python.solutions import hands

        self._hands = hands.Hands(static_image_mode=False, max_num_hands=2, model_complexity=1,
                                  min_detection_confidence=0.5, min_tracking_confidence=0.3)

    def __call__(self, crop_rgb: np.ndarray, size: int, face_lm: np.ndarray) -> np.ndarray:
        """``face_lm``: the frame's face landmarks (crop pixels at ``size``)."""
        import cv2

        from ..native_log import quiet_native_stderr
        from .segment import FACE_OVAL

        with quiet_native_stderr():  # start-up lines, and one when tracking starts
            res = self._hands.process(np.ascontiguousarray(crop_rgb))
        oval = np.ascontiguousarray(face_lm[FACE_OVAL, :2], np.float32)
        m = np.zeros((size, size), np.uint8)
        for hand in res.multi_hand_landmarks or []:
            pts = np.array([[p.x, p.y] for p in hand.landmark], np.float64) * size
            if cv2.pointPolygonTest(oval, (float(pts[WRIST, 0]), float(pts[WRIST, 1])), False) > 0:
                continue  # a part of the face taken for a palm (module doc)
            m |= hand_region(pts, size)
        return m * 255

    def close(self) -> None:
        self._hands.close()


def covers_face(occluder: np.ndarray, face_lm: np.ndarray, min_share: float = 0.01) -> bool:
    """Whether an occluder mask (H,W, 0/255) covers at least ``min_share`` of the face oval of the
    frame's landmarks (crop pixels)."""
    from .segment import face_oval_mask

    face = face_oval_mask(face_lm, occluder.shape)
    area = int(face.sum())
    return area > 0 and int(((occluder > 127) & (face > 0)).sum()) >= min_share * area
