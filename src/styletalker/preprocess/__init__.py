"""Preprocessing: video -> tracked, cropped, masked training dataset (``work/preprocess/``).

    from styletalker.preprocess import run_preprocess, load_dataset, track_video
    run_preprocess("video.mp4", "work", start=10, duration=4, fps=10, size=128)
    ds = load_dataset("work")           # tensors + ds.camera(i)
    drv = track_video("driver.mp4", start=0, duration=5, fps=25, max_frames=None, size=256, progress=False)

Formats: docs/FORMATS.md; details and measurements: docs/preprocess.md.
"""

from ..lazy import lazy_exports

# name -> submodule; imported on first use, so that ``styletalker.preprocess.options`` (read by
# the command line) does not pull in torch and MediaPipe
_EXPORTS = {
    "CanonicalMeshT": "dataset", "Dataset": "dataset", "load_dataset": "dataset",
    "FOV_Y_DEG": "options", "TrackOptions": "options", "DEFAULT_MIN_FRAMES": "options",
    "CanonicalMesh": "mp_models", "canonical_mesh": "mp_models",
    "run_preprocess": "pipeline", "summary_line": "pipeline",
    "track_video": "tracking",
}
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
