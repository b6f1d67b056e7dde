"""``styletalker preprocess``: write ``work/preprocess/`` (see docs/FORMATS.md, docs/preprocess.md).

Everything is written into ``work/preprocess.partial/`` and renamed to ``work/preprocess/`` only
after ``stage.json`` is written, so an interrupted or failed run never leaves a folder that looks
complete. Re-running with the same options resumes from the partial folder (tracking results and
already written frames/masks are reused); other options are refused unless ``--force``
(the resume rule of :class:`styletalker.workfolder.WorkFolder`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..safeload import load_npz
from ..workdir import (STAGE_FILE, atomic_write_json, is_complete, log, progress as progress_bar, read_json,
                       replace_dir, save_npz, write_image)
from ..workfolder import WorkFolder
from . import geometry as geo
from . import mp_models
from .hands import HandMasker, covers_face
from .overlay import draw_overlay
from .segment import person_mask
from .options import TrackOptions
from .tracking import detect_faces, iter_kept_frames, kept_fps, solve_geometry

STAGE = "preprocess"
OCCLUDERS = "occluders"  # per-frame masks of hands in front of the face (preprocess/hands.py)
FORMAT_VERSION = 1
TRACK_KEYS = ("frame_index", "time", "K", "world_to_cam", "expression", "landmarks2d", "landmarks3d", "crop_box")


def _source_id(video: Path) -> dict:
    st = video.stat()
    return {"path": str(video.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def read_png(path, *, gray: bool = False) -> np.ndarray:
    from ..safeload import read_image

    return read_image(path, "preprocessed image", "re-run `styletalker preprocess` with --force", gray=gray)


def frame_name(k: int) -> str:
    return f"{k:06d}.png"


def run_preprocess(
    video,
    work,
    *,
    start: float = TrackOptions.start,
    duration: float | None = TrackOptions.duration,
    fps: float | None = TrackOptions.fps,
    max_frames: int | None = TrackOptions.max_frames,
    size: int = TrackOptions.size,
    force: bool = False,
    progress: bool = True,
    min_frames: int = TrackOptions.min_frames,
    max_lost: float = TrackOptions.max_lost,
    smooth: float = TrackOptions.smooth,
    overlay: bool = True,
    fov: float = TrackOptions.fov,
    hands: bool = TrackOptions.hands,
) -> Path:
    """Preprocess ``video`` into ``work/preprocess/`` and return that folder.

    A complete stage is left untouched (no-op) unless ``force``. Raises
    :class:`~styletalker.errors.InputError` for unusable input (not a video, corrupt, no face,
    several faces, too few frames) without leaving a complete-looking output.
    """
    t_start = time.time()
    video = Path(video)
    work = Path(work)
    o = TrackOptions(start=float(start), duration=duration, fps=fps, max_frames=max_frames, size=int(size),
                     min_frames=int(min_frames), max_lost=float(max_lost), smooth=float(smooth), fov=float(fov),
                     hands=bool(hands))
    if work.exists() and not work.is_dir():
        raise InputError(f"{work}: exists and is not a folder; give a work folder path")
    if not video.is_file():
        raise InputError(f"{video}: no such file" if not video.exists() else f"{video}: expected a video file")
    wf = WorkFolder(work)
    with wf.lock("preprocess"):
        return _preprocess(video, wf, o, force, progress, fps, overlay, t_start)


def _preprocess(video: Path, wf: WorkFolder, o: TrackOptions, force: bool, progress: bool, fps, overlay: bool,
                t_start: float) -> Path:
    final = wf.preprocess
    partial = wf.staging(final)
    opts = {"format_version": FORMAT_VERSION, "source": _source_id(video), "options": o.to_json()}
    # one resume rule (WorkFolder.begin): the same record resumes / is a no-op, another one is refused;
    # an option a stored record lacks (written before it existed) counts as its default
    defaults = {"options": TrackOptions().to_json()}
    if is_complete(final) and not force and wf.begin(final, opts, defaults=defaults) is None:
        if progress:
            log(f"{final} is already complete; nothing to do (use --force to redo it)")
        return final
    record = wf.begin(partial, opts, force=force, defaults=defaults)
    if progress and (partial / "track.npz").is_file():
        log(f"resuming from {partial}")

    # ---- pass 1: tracking (checkpointed as track.npz + track.json)
    t0 = time.time()
    track_npz, track_json = partial / "track.npz", partial / "track.json"
    if track_npz.is_file() and track_json.is_file():
        tr = load_npz(track_npz, "tracking checkpoint")
        meta = read_json(track_json)
        tr.update(expression_names=meta["expression_names"], stats=meta["stats"], box=tuple(meta["box"]))
        raw_info = meta["raw"]
    else:
        try:
            raw = detect_faces(video, o, show_progress=progress)  # InputError for unusable videos
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # only the record so far: leave nothing behind
            raise
        tr = solve_geometry(raw, o)
        raw_info = {k: raw[k] for k in ("width", "height", "rotation", "source_fps", "decoded", "dropped",
                                        "multi_face_frames")}
        save_npz(track_npz, **{k: tr[k] for k in TRACK_KEYS})
        atomic_write_json(track_json, {"expression_names": tr["expression_names"], "stats": tr["stats"],
                                       "box": list(tr["box"]), "raw": raw_info})
    t_track = time.time() - t0
    n = len(tr["frame_index"])
    box = tuple(int(v) for v in tr["box"])

    # ---- pass 2: crops + person masks (resumable per frame)
    bar_kw = {} if progress else {"disable": True}  # the progress bars of the passes below
    t0 = time.time()
    fdir, mdir, odir = partial / "frames", partial / "masks", partial / OCCLUDERS
    fdir.mkdir(exist_ok=True)
    mdir.mkdir(exist_ok=True)
    todo = [k for k in range(n) if not ((fdir / frame_name(k)).is_file() and (mdir / frame_name(k)).is_file())]
    if todo:
        todo_set = set(todo)
        seg = mp_models.create_segmenter()
        valid = geo.valid_region(box, raw_info["width"], raw_info["height"], o.size)
        bar = progress_bar(total=len(todo), desc="crop + mask", unit="fr", **bar_kw)
        try:
            for k, img in iter_kept_frames(video, o, tr["frame_index"]):
                if k not in todo_set:
                    continue
                crop_src = geo.crop_and_resize(img, box, None)
                crop = geo.crop_and_resize(img, box, o.size)
                mask = person_mask(seg, crop_src, o.size, tr["landmarks2d"][k], valid=valid)
                write_image(mdir / frame_name(k), mask)
                write_image(fdir / frame_name(k), crop)
                todo_set.discard(k)
                bar.update(1)
        finally:
            bar.close()
            seg.close()
        if todo_set:
            raise InputError(f"{video}: {len(todo_set)} tracked frames could not be decoded again (corrupt video?)")
    # ---- pass 3: hands, tracked over the written crops in order; in one go (a resumed run must
    # not start tracking mid-clip), redone whole unless every frame's mask is there
    if o.hands and not all((odir / frame_name(k)).is_file() for k in range(n)):
        odir.mkdir(exist_ok=True)
        hand_masker = HandMasker()
        try:
            for k in progress_bar(range(n), desc="hands", unit="fr", **bar_kw):
                crop = read_png(fdir / frame_name(k))
                write_image(odir / frame_name(k), hand_masker(crop, o.size, tr["landmarks2d"][k]))
        finally:
            hand_masker.close()
    t_frames = time.time() - t0

    # ---- tracking.npz, mesh, manifest, overlay
    t0 = time.time()
    save_npz(partial / "tracking.npz", **{k: tr[k] for k in TRACK_KEYS})
    mesh = mp_models.canonical_mesh()
    save_npz(partial / "canonical_mesh.npz", vertices=mesh.vertices, faces=mesh.faces, uvs=mesh.uvs)
    occluded = [k for k in range(n) if o.hands
                and covers_face(read_png(odir / frame_name(k), gray=True), tr["landmarks2d"][k])]
    neutral = geo.choose_neutral_frame(tr["expression"], tr["world_to_cam"], exclude=occluded)
    out_fps = kept_fps(tr["time"], fps, raw_info["source_fps"])
    if overlay:
        def frames_iter():
            for k in progress_bar(range(n), desc="overlay", unit="fr", **bar_kw):
                img = read_png(fdir / frame_name(k))
                m = read_png(mdir / frame_name(k), gray=True)
                occ = read_png(odir / frame_name(k), gray=True) if o.hands else None
                yield draw_overlay(img, m, tr["landmarks2d"][k], tr["K"][k], tr["world_to_cam"][k], occluder=occ)

        from ..video import write_video

        write_video(partial / "overlay.mp4", frames_iter(), out_fps)
    t_overlay = time.time() - t0

    stats = dict(tr["stats"])
    import mediapipe

    manifest = {
        "format_version": FORMAT_VERSION,
        "source": {**_source_id(video), "width": raw_info["width"], "height": raw_info["height"],
                   "rotation": raw_info.get("rotation", 0), "fps": raw_info["source_fps"]},
        "window": {"start": o.start, "duration": o.duration, "fps": o.fps, "max_frames": o.max_frames},
        "fps": out_fps,
        "num_frames": n,
        "image_size": [o.size, o.size],
        "crop_box": list(box),
        "fov_y_deg_full_frame": o.fov,
        "expression_names": list(tr["expression_names"]),
        "neutral_frame": neutral,
        "frames": "frames/%06d.png (k = row of tracking.npz)",
        "masks": "masks/%06d.png",
        **({"occluders": f"{OCCLUDERS}/%06d.png (hands; left out of training and scoring)",
            "occluded_frames": occluded} if o.hands else {}),
        "decoded_frames": raw_info["decoded"],
        "dropped": raw_info["dropped"],
        "multi_face_frames": raw_info["multi_face_frames"],
        "options": o.to_json(),
        "stats": stats,
        "trackers": {
            "mediapipe": mediapipe.__version__,
            "face_landmarker": mp_models.model_version(),
            "segmentation": "mediapipe.solutions.selfie_segmentation model_selection=0",
            "styletalker": __version__,
        },
    }
    atomic_write_json(partial / "manifest.json", manifest)
    for f in ("track.npz", "track.json"):
        (partial / f).unlink(missing_ok=True)
    total = time.time() - t_start
    WorkFolder.complete(
        partial, record,
        stage=STAGE,
        frames=n,
        decoded_frames=raw_info["decoded"],
        dropped_frames=len(raw_info["dropped"]),
        neutral_frame=neutral,
        occluded_frames=len(occluded),
        reproj_px=stats["reproj_rigid_px"],
        seconds={"track": round(t_track, 2), "frames": round(t_frames, 2), "overlay": round(t_overlay, 2),
                 "total": round(total, 2)},
        frames_per_second=round(raw_info["decoded"] / max(total, 1e-6), 2),
    )
    replace_dir(partial, final)
    return final


def summary_line(folder: Path) -> str:
    st = read_json(folder / STAGE_FILE)
    return (
        f"preprocess: kept {st['frames']}/{st['decoded_frames']} frames (dropped {st['dropped_frames']}), "
        f"reprojection error {st['reproj_px']:.2f} px, "
        + (f"a hand over the face in {st['occluded_frames']} frames (its pixels left out), " if st.get("occluded_frames") else "")
        + f"{st['seconds']['total']:.1f} s "
        f"({st['frames_per_second']:.1f} frames/s) -> {folder}"
    )


__all__ = ["run_preprocess", "summary_line", "read_png", "frame_name"]
