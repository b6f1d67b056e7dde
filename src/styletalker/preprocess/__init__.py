"""Preprocessing: video -> tracked, cropped, masked training dataset (``work/preprocess/``).

    from styletalker.preprocess import run_preprocess, load_dataset, track_video
    run_preprocess("video.mp4", "work", start=10, duration=4, fps=10, size=128)
    ds = load_dataset("work")           # tensors + ds.camera(i)
    drv = track_video("driver.mp4", start=0, duration=5, fps=25, max_frames=None, size=256, progress=False)

Formats: docs/FORMATS.md; details and measurements: docs/preprocess.md.
"""

from .dataset import CanonicalMeshT, Dataset, load_dataset
from .mp_models import FOV_Y_DEG, CanonicalMesh, canonical_mesh
from .pipeline import run_preprocess, summary_line
from .tracking import DEFAULT_MIN_FRAMES, TrackOptions, track_video

__all__ = [
    "run_preprocess",
    "load_dataset",
    "track_video",
    "Dataset",
    "CanonicalMesh",
    "CanonicalMeshT",
    "canonical_mesh",
    "summary_line",
    "TrackOptions",
    "DEFAULT_MIN_FRAMES",
    "FOV_Y_DEG",
]
