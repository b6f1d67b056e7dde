"""MediaPipe models used by preprocessing: face landmarker (Tasks API), selfie segmentation
(legacy solution, bundled with mediapipe 0.10.21), and the canonical face mesh / camera settings
stored in ``face_landmarker.task``.

MediaPipe's face geometry pipeline expresses ``facial_transformation_matrix`` in an OpenGL
camera (x right, y up, z towards the viewer, centimetres) whose perspective projection has a
vertical field of view of :data:`FOV_Y_DEG` over the full frame, principal point at the frame
centre. The 63 degrees are MediaPipe's default ``PerspectiveCamera`` of the face landmarker
graph (the ``.task`` file holds only the mesh and the Procrustes basis); we checked it against
the 2D landmarks: the rigid canonical mesh reprojects best at 63-66 degrees (see
docs/preprocess.md).
"""

from __future__ import annotations

import functools
import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..assets import face_landmarker_path
from ..errors import MissingModelError
from ..native_log import QuietFirstCall, quiet_native_stderr

from .options import FOV_Y_DEG
# OpenGL (y up, z to viewer) <-> OpenCV (y down, z forward); a proper rotation (det +1).
FLIP = np.diag([1.0, -1.0, -1.0])
CM_TO_DM = 0.1
METADATA_NAME = "geometry_pipeline_metadata_landmarks.binarypb"
N_LANDMARKS = 478
N_MESH = 468


@dataclass
class CanonicalMesh:
    """MediaPipe canonical face mesh in canonical head space (OpenCV axes, decimetres).

    ``uvs`` are MediaPipe's texture coordinates with v measured from the top of the texture
    (forehead v ~ 0.1, chin v ~ 0.95).
    """

    vertices: np.ndarray  # (468,3) float32
    faces: np.ndarray  # (F,3) int64
    uvs: np.ndarray  # (468,2) float32
    procrustes_ids: np.ndarray  # (33,) landmark ids MediaPipe uses for its pose fit
    procrustes_weights: np.ndarray  # (33,)


def full_frame_K(width: int, height: int, fov_y_deg: float = FOV_Y_DEG) -> np.ndarray:
    """Intrinsics (OpenCV, pixel centres at +0.5) of MediaPipe's virtual camera for a frame."""
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def gl_pose_to_cv(M: np.ndarray) -> np.ndarray:
    """MediaPipe facial transformation matrix (canonical cm -> OpenGL camera cm) to
    ``world_to_cam`` (canonical dm -> OpenCV camera dm). Works on (...,4,4)."""
    M = np.asarray(M, dtype=np.float64)
    out = np.zeros(M.shape)
    out[..., :3, :3] = FLIP @ M[..., :3, :3] @ FLIP
    out[..., :3, 3] = (M[..., :3, 3] @ FLIP.T) * CM_TO_DM
    out[..., 3, 3] = 1.0
    return out


@functools.lru_cache(maxsize=4)
def _task_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def model_path() -> Path:
    return face_landmarker_path()


def model_version(path: Path | None = None) -> str:
    path = Path(path or model_path())
    return "face_landmarker.task sha256:" + hashlib.sha256(_task_bytes(str(path))).hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _canonical_mesh(path: str) -> CanonicalMesh:
    from mediapipe.modules.face_geometry.protos import geometry_pipeline_metadata_pb2 as gpm

    try:
        with zipfile.ZipFile(path) as z:
            blob = z.read(METADATA_NAME)
    except (zipfile.BadZipFile, KeyError) as e:
        raise MissingModelError(f"{path}: not a MediaPipe face landmarker bundle ({e})") from None
    meta = gpm.GeometryPipelineMetadata()
    meta.ParseFromString(blob)
    mesh = meta.canonical_mesh
    # VERTEX_PT: x, y, z, u, v per vertex; TRIANGLE primitives.
    vb = np.asarray(mesh.vertex_buffer, dtype=np.float64).reshape(-1, 5)
    faces = np.asarray(mesh.index_buffer, dtype=np.int64).reshape(-1, 3)
    if vb.shape[0] != N_MESH:
        raise MissingModelError(f"{path}: canonical mesh has {vb.shape[0]} vertices, expected {N_MESH}")
    verts = (vb[:, :3] @ FLIP.T) * CM_TO_DM
    ids = np.array([b.landmark_id for b in meta.procrustes_landmark_basis], dtype=np.int64)
    w = np.array([b.weight for b in meta.procrustes_landmark_basis], dtype=np.float64)
    return CanonicalMesh(verts.astype(np.float32), faces, vb[:, 3:5].astype(np.float32), ids, w)


def canonical_mesh(path: Path | None = None) -> CanonicalMesh:
    return _canonical_mesh(str(path or model_path()))


def create_landmarker(num_faces: int = 2, path: Path | None = None):
    """A FaceLandmarker in VIDEO mode with blendshapes and transformation matrices."""
    from mediapipe.tasks.python import BaseOptions, vision

    path = Path(path or model_path())
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=_task_bytes(str(path))),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=num_faces,
        min_face_detection_confidence=0.5,
        min_face_presence_confidence=0.5,
        min_tracking_confidence=0.5,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    try:
        with quiet_native_stderr():
            landmarker = vision.FaceLandmarker.create_from_options(opts)
    except Exception as e:  # corrupt / wrong model file
        raise MissingModelError(f"{path}: cannot load the face landmarker ({e})") from None
    # the first inference logs "Feedback manager requires a model with a single signature ..."
    return QuietFirstCall(landmarker, "detect_for_video")


def create_segmenter():
    """MediaPipe selfie segmentation (general model, bundled with mediapipe 0.10.21)."""
    from mediapipe.python.solutions import selfie_segmentation

    # the graph starts (and logs) on the first process() call
    return QuietFirstCall(selfie_segmentation.SelfieSegmentation(model_selection=0), "process")
