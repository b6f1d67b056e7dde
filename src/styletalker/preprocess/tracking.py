"""Face tracking of a video window: 478 landmarks, 52 blendshapes, head pose, crop, intrinsics.

:func:`track_video` is the in-memory entry point (also used by ``styletalker animate --driver``);
:func:`run_preprocess <styletalker.preprocess.pipeline.run_preprocess>` builds on it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..video import iter_frames, probe
from ..workdir import log, progress
from . import geometry as geo
from . import mp_models

from .options import DEFAULT_MIN_FRAMES, DEFAULT_SMOOTH_S, TrackOptions


def _validate(video, o: TrackOptions):
    if o.start < 0:
        raise InputError(f"--start must be >= 0 (got {o.start})")
    if o.duration is not None and o.duration <= 0:
        raise InputError(f"--duration must be > 0 (got {o.duration})")
    if o.fps is not None and o.fps <= 0:
        raise InputError(f"--fps must be > 0 (got {o.fps})")
    if o.max_frames is not None and o.max_frames <= 0:
        raise InputError(f"--max-frames must be > 0 (got {o.max_frames})")
    if o.size < 16:
        raise InputError(f"--size must be at least 16 pixels (got {o.size})")
    if not 0.0 <= o.max_lost <= 1.0:
        raise InputError(f"--max-lost must be a fraction in [0, 1] (got {o.max_lost})")
    if o.smooth < 0:
        raise InputError(f"--smooth must be >= 0 seconds (got {o.smooth})")
    if o.min_frames < 1:
        raise InputError(f"--min-frames must be >= 1 (got {o.min_frames})")
    if not 1.0 <= o.fov <= 150.0:
        raise InputError(f"--fov must be between 1 and 150 degrees (got {o.fov})")
    info = probe(video)
    if info.width < 32 or info.height < 32:
        raise InputError(f"{video}: frames are {info.width}x{info.height}; too small to find a face")
    fmt = _container_format(video)
    if fmt == "tty":  # ffmpeg renders text files as "video"
        raise InputError(f"{video}: not a video file (it looks like a text file)")
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise InputError(f"{video}: is a still image ({fmt}), expected a video file")
    return info


def _container_format(video) -> str:
    import av

    c = av.open(str(video))
    try:
        return c.format.name
    finally:
        c.close()


def _expected_frames(info, o: TrackOptions) -> int | None:
    if info.duration is None:
        return o.max_frames
    dur = max(0.0, info.duration - o.start)
    if o.duration is not None:
        dur = min(dur, o.duration)
    n = int(math.ceil(dur * min(o.fps or info.fps, info.fps)))
    if o.max_frames:
        n = min(n, o.max_frames)
    return n


def _box_area(lm: np.ndarray) -> float:
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return float(np.prod(hi - lo))


def _check_truncated(video, info, o: TrackOptions, n_dec: int, last_t: float | None) -> None:
    """Raise if decoding stopped long before the end the container announces (truncated or
    corrupt file; ffmpeg silently stops or conceals errors in such files)."""
    if info.duration is None or last_t is None:
        return
    if o.max_frames is not None and n_dec >= o.max_frames:
        return
    end = info.duration if o.duration is None else min(info.duration, o.start + o.duration)
    span = end - o.start
    if span <= 0:
        return
    missing = end - last_t
    if missing > max(2.0, 0.1 * span):
        raise InputError(
            f"{video}: video data ends at {last_t:.1f}s but the file says it lasts {info.duration:.1f}s; "
            f"the file is truncated or corrupt"
        )


def detect_faces(video, o: TrackOptions, *, show_progress: bool = True) -> dict:
    """Run the face landmarker over the window. Returns raw per-frame results of kept frames
    plus bookkeeping (decoded count, dropped frames and why). Raises InputError on bad input."""
    info = _validate(video, o)
    landmarker = mp_models.create_landmarker(num_faces=2)
    import mediapipe as mp

    names: list[str] | None = None
    kept_idx, kept_t, lms, bss, mats = [], [], [], [], []
    dropped: list[dict] = []
    n_multi = 0
    n_dec = 0
    last_t = None
    last_ms = -1
    prev_center = None
    bar_kw = {} if show_progress else {"disable": True}
    bar = progress(total=_expected_frames(info, o), desc="track faces", unit="fr", **bar_kw)
    try:
        for idx, t, img in iter_frames(video, start=o.start, duration=o.duration, fps=o.fps, max_frames=o.max_frames):
            n_dec += 1
            last_t = t
            bar.update(1)
            ms = max(int(round(t * 1000)), last_ms + 1)
            last_ms = ms
            res = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=img), ms)
            nf = len(res.face_landmarks)
            if nf == 0:
                dropped.append({"frame_index": idx, "time": t, "reason": "no face"})
                continue
            faces = [np.array([[p.x, p.y, p.z] for p in f], dtype=np.float64) for f in res.face_landmarks]
            j = 0
            if nf > 1:
                n_multi += 1
                # keep the face nearest to the previous one (largest if none yet)
                if prev_center is not None:
                    j = int(np.argmin([np.linalg.norm(f[:, :2].mean(0) - prev_center) for f in faces]))
                else:
                    j = int(np.argmax([_box_area(f) for f in faces]))
            if len(res.face_blendshapes) <= j or len(res.facial_transformation_matrixes) <= j:
                dropped.append({"frame_index": idx, "time": t, "reason": "incomplete tracker output"})
                continue
            cats = res.face_blendshapes[j]
            if names is None:
                names = [c.category_name for c in cats]
            kept_idx.append(idx)
            kept_t.append(t)
            lms.append(faces[j])
            prev_center = faces[j][:, :2].mean(0)
            bss.append(np.array([c.score for c in cats], dtype=np.float64))
            mats.append(np.array(res.facial_transformation_matrixes[j], dtype=np.float64))
    finally:
        bar.close()
        landmarker.close()

    where = f"{video} ({o.window_text()})"
    if n_dec == 0:
        raise InputError(f"{where}: no frames decoded in the selected window (video is {info.duration or 0:.1f}s long)")
    _check_truncated(video, info, o, n_dec, last_t)
    if n_dec < o.min_frames:
        raise InputError(
            f"{where}: video too short: only {n_dec} frames in the selected window, need at least "
            f"{o.min_frames} (use a longer clip or lower --min-frames)"
        )
    if not kept_idx:
        raise InputError(f"{where}: no face found in any of the {n_dec} frames")
    if n_multi > o.max_multi * n_dec:
        raise InputError(
            f"{where}: several faces found in {n_multi} of {n_dec} frames; preprocessing needs a video "
            f"of one person (crop the video to one face)"
        )
    n_lost = len(dropped)
    if n_lost > o.max_lost * n_dec:
        raise InputError(
            f"{where}: face lost in {n_lost} of {n_dec} frames (more than {o.max_lost:.0%}); "
            f"choose a window where the face is visible"
        )
    if len(kept_idx) < o.min_frames:
        raise InputError(
            f"{where}: only {len(kept_idx)} frames with a usable face, need at least {o.min_frames} "
            f"(use a longer clip or lower --min-frames)"
        )
    return {
        "width": info.width,
        "height": info.height,
        "rotation": info.rotation,
        "source_fps": info.fps,
        "frame_index": np.array(kept_idx, dtype=np.int64),
        "time": np.array(kept_t, dtype=np.float64),
        "landmarks_norm": np.stack(lms),  # (N,478,3): x/W, y/H, z/W (MediaPipe)
        "blendshapes": np.clip(np.stack(bss), 0.0, 1.0),
        "matrix_gl": np.stack(mats),
        "expression_names": names,
        "decoded": n_dec,
        "dropped": dropped,
        "multi_face_frames": n_multi,
    }


def solve_geometry(raw: dict, o: TrackOptions) -> dict:
    """From raw tracker output: fixed crop, crop intrinsics, refined + smoothed pose, 2D/3D
    landmarks in the crop, reprojection errors."""
    W, H = raw["width"], raw["height"]
    ln = raw["landmarks_norm"]
    n = ln.shape[0]
    lm_src = ln[..., :2] * np.array([W, H], dtype=np.float64)
    rel_z = ln[..., 2] * W
    mesh = mp_models.canonical_mesh()
    verts = mesh.vertices.astype(np.float64)
    K_full = mp_models.full_frame_K(W, H, o.fov)
    Kf = np.broadcast_to(K_full, (n, 3, 3))

    w2c_mp = mp_models.gl_pose_to_cv(raw["matrix_gl"])
    # MediaPipe solves the pose for its own 63-degree camera; for another field of view the head
    # is farther away (or nearer) by the ratio of focal lengths, at the same place in the image
    w2c_mp[:, 2, 3] *= K_full[1, 1] / mp_models.full_frame_K(W, H)[1, 1]
    err_mp = geo.reprojection_error(Kf, w2c_mp, verts, lm_src[:, : mp_models.N_MESH])
    w2c = geo.refine_pose_pnp(w2c_mp, Kf, verts, lm_src[:, : mp_models.N_MESH]) if o.refine else w2c_mp
    w2c = geo.smooth_poses(w2c, raw["time"], o.smooth)

    box = geo.crop_box_from_landmarks(lm_src, W, H, scale=o.crop_scale)
    K = geo.crop_K(K_full, box, o.size)
    Kn = np.repeat(K[None], n, axis=0)
    lm2d = geo.to_crop_px(lm_src, box, o.size)
    err_rigid = geo.reprojection_error(Kn, w2c, verts, lm2d[:, : mp_models.N_MESH])
    px_scale = o.size / float(box[2] - box[0])
    lm3d, zscale = geo.landmarks_3d(Kn, w2c, lm2d, rel_z * px_scale, verts)
    err_3d = geo.reprojection_error(Kn, w2c, lm3d, lm2d)
    stats = {
        "reproj_rigid_px": float(err_rigid.mean()),
        "reproj_rigid_px_max": float(err_rigid.max()),
        "reproj_mediapipe_pose_px": float(err_mp.mean() * px_scale),
        "reproj_landmarks3d_px": float(err_3d.mean()),
        "landmarks3d_offset_dm": float(np.linalg.norm(lm3d[:, : mp_models.N_MESH] - verts, axis=-1).mean()),
        "depth_scale_ratio": zscale,
        "pose_step_deg_max": float(geo.rotation_angle_deg(np.swapaxes(w2c[1:, :3, :3], 1, 2) @ w2c[:-1, :3, :3]).max())
        if n > 1 else 0.0,
    }
    return {
        "frame_index": raw["frame_index"],
        "time": raw["time"],
        "K": Kn.astype(np.float32),
        "world_to_cam": w2c.astype(np.float32),
        "expression": raw["blendshapes"].astype(np.float32),
        "landmarks2d": lm2d.astype(np.float32),
        "landmarks3d": lm3d.astype(np.float32),
        "crop_box": np.repeat(np.array(box, dtype=np.int64)[None], n, axis=0),
        "expression_names": list(raw["expression_names"]),
        "stats": stats,
        "box": box,
    }


def kept_fps(times: np.ndarray, requested: float | None, source_fps: float) -> float:
    """Frame rate of the kept frames (the requested/source rate; gaps are dropped frames)."""
    return float(min(requested, source_fps) if requested else source_fps)


def iter_kept_frames(video, o: TrackOptions, frame_index: np.ndarray):
    """Decode the same window again and yield (k, source_rgb) for the kept frames, in order."""
    want = {int(f): k for k, f in enumerate(frame_index)}
    last = int(frame_index[-1])
    for idx, _t, img in iter_frames(video, start=o.start, duration=o.duration, fps=o.fps, max_frames=o.max_frames):
        if idx in want:
            yield want[idx], img
        if idx >= last:
            break


def track_video(
    video,
    *,
    start: float = 0.0,
    duration: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    size: int = 256,
    progress: bool = True,
    min_frames: int = DEFAULT_MIN_FRAMES,
    return_frames: bool = False,
    smooth: float = DEFAULT_SMOOTH_S,
) -> dict:
    """Track a video window in memory (no work folder).

    Returns a dict of numpy arrays over the N kept frames: ``frame_index`` (N,), ``time`` (N,),
    ``K`` (N,3,3) crop intrinsics, ``world_to_cam`` (N,4,4), ``expression`` (N,52),
    ``landmarks2d`` (N,478,2) crop pixels, ``landmarks3d`` (N,478,3) canonical space,
    ``crop_box`` (N,4); plus ``expression_names``, ``fps``, ``size``, ``source_size`` (W,H),
    ``dropped`` (list of dicts), ``stats`` and, with ``return_frames``, ``frames``
    (N,size,size,3) uint8 crops. Raises :class:`~styletalker.errors.InputError` for bad input.
    """
    video = Path(video)
    o = TrackOptions(start=start, duration=duration, fps=fps, max_frames=max_frames, size=size,
                     min_frames=min_frames, smooth=smooth)
    t0 = time.time()
    raw = detect_faces(video, o, show_progress=progress)
    out = solve_geometry(raw, o)
    out.update(
        fps=kept_fps(raw["time"], fps, raw["source_fps"]),
        size=size,
        source_size=(raw["width"], raw["height"]),
        dropped=raw["dropped"],
        decoded=raw["decoded"],
    )
    if return_frames:
        frames = np.zeros((len(out["frame_index"]), size, size, 3), np.uint8)
        for k, img in iter_kept_frames(video, o, out["frame_index"]):
            frames[k] = geo.crop_and_resize(img, out["box"], size)
        out["frames"] = frames
    out["stats"]["track_seconds"] = time.time() - t0
    if progress:
        log(f"tracked {len(out['frame_index'])}/{raw['decoded']} frames of {video.name} "
            f"(reprojection {out['stats']['reproj_rigid_px']:.2f}px)")
    return out
