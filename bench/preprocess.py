"""Benchmark `styletalker preprocess` on the real sample video and report its quality numbers.

    python bench/preprocess.py                       # franck.webm, 20 s from 20 s, all 25 fps, 256 px
    python bench/preprocess.py --duration 8 --size 128
    python bench/preprocess.py --video data/videos/cap13_edit2.mp4 --start 0 --duration 10

Prints one JSON object: per-stage seconds and frames/s (tracking, crop+mask, overlay), frames
kept/dropped, reprojection errors (rigid canonical mesh through the tracked pose, MediaPipe's own
pose before refinement, 3D landmarks), pose smoothness (consecutive-frame rotation step and
rotation "acceleration" before/after smoothing) and the 3D-landmark depth-scale ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    from styletalker.assets import sample_video
    from styletalker.preprocess import run_preprocess
    from styletalker.preprocess.geometry import rotation_angle_deg
    from styletalker.workdir import read_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=None)
    ap.add_argument("--start", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--keep", default=None, help="write the work folder here instead of a temp dir")
    a = ap.parse_args()
    video = Path(a.video) if a.video else sample_video()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.keep or tmp)
        t0 = time.time()
        out = run_preprocess(video, work, start=a.start, duration=a.duration, fps=a.fps, size=a.size, progress=False,
                             force=True)
        wall = time.time() - t0
        st, man = read_json(out / "stage.json"), read_json(out / "manifest.json")
        with np.load(out / "tracking.npz") as z:
            R = z["world_to_cam"][:, :3, :3].astype(np.float64)
        step = rotation_angle_deg(np.swapaxes(R[1:], 1, 2) @ R[:-1])
        from scipy.spatial.transform import Rotation

        rv = Rotation.from_matrix(R).as_rotvec()
        acc = np.degrees(np.linalg.norm(rv[2:] - 2 * rv[1:-1] + rv[:-2], axis=1)) if len(rv) > 2 else np.zeros(1)
        sec = st["seconds"]
        dec = st["decoded_frames"]
        res = {
            "video": str(video),
            "window": man["window"],
            "size": a.size,
            "decoded": dec,
            "kept": st["frames"],
            "dropped": st["dropped_frames"],
            "seconds": sec,
            "wall_seconds": round(wall, 2),
            "fps_total": round(dec / wall, 1),
            "fps_tracking": round(dec / max(sec["track"], 1e-9), 1),
            "fps_crop_mask": round(st["frames"] / max(sec["frames"], 1e-9), 1),
            "stats": {k: round(v, 4) if isinstance(v, float) else v for k, v in man["stats"].items()},
            "rotation_step_deg": {"mean": round(float(step.mean()), 3), "max": round(float(step.max()), 3)},
            "rotation_accel_deg_mean": round(float(acc.mean()), 4),
            "crop_box": man["crop_box"],
            "neutral_frame": man["neutral_frame"],
        }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
