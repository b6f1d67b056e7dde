"""Cross-camera scoring (`styletalker evaluate --views`) and the turn-away check, on real clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from styletalker.crossview import cross_view_scores, fit_similarity, match_frames, yaw_sweep
from styletalker.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def test_fit_similarity_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (50, 2))
    a, s, t = np.radians(7.0), 1.13, np.array([4.0, -2.5])
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = s * src @ R.T + t
    A = fit_similarity(src, dst)
    assert np.allclose(A[:, :2], s * R, atol=1e-9) and np.allclose(A[:, 2], t, atol=1e-7)
    assert match_frames([3, 4, 5, 9], [1, 4, 5, 6, 9])[0].tolist() == [1, 2, 3]


def test_shape_ceiling_of_a_silhouette_that_covers_the_head():
    """A render whose silhouette covers the whole head leaves the frame as it is: the ceiling is
    capped (not infinite, which made a benchmark's mean over frames infinite), and the outline
    share counts the pixels rendered outside the head."""
    from styletalker.crossview import SHAPE_CEILING_CAP_DB, shape_scores

    bg = (1.0, 1.0, 1.0)
    ref = np.ones((32, 32, 3), np.float32)
    head = np.zeros((32, 32, 1), np.float32)
    head[8:24, 8:24] = 1
    ref[8:24, 8:24] = 0.3
    alpha = np.zeros_like(head)
    alpha[4:28, 4:28] = 1
    img = np.where(alpha > 0.5, 0.3, 1.0).astype(np.float32)
    r = shape_scores(alpha, head, ref, bg, img)
    assert r["psnr_shape"] == SHAPE_CEILING_CAP_DB and r["iou"] == pytest.approx(256 / 576)
    assert r["outline_share"] == pytest.approx(1.0)
    alpha[4:28, 4:28] = 0
    alpha[8:16, 8:24] = 1  # half the head: a finite ceiling below the cap
    assert shape_scores(alpha, head, ref, bg)["psnr_shape"] < SHAPE_CEILING_CAP_DB


def _copy_work(src: Path, dst: Path, shift_x: float = 0.0) -> Path:
    shutil.copytree(src / "preprocess", dst / "preprocess")
    if shift_x:
        p = dst / "preprocess" / "tracking.npz"
        with np.load(p) as z:
            d = {k: z[k] for k in z.files}
        # the "other camera" tracked the same images with a pose off by a sideways shift: its 3D
        # landmarks move the other way, so they still project onto the same 2D landmarks
        w2c = d["world_to_cam"].copy()
        w2c[:, 0, 3] += shift_x
        delta = np.einsum("nji,j->ni", w2c[:, :3, :3], np.array([shift_x, 0.0, 0.0]))  # R^T (dx, 0, 0)
        d["world_to_cam"] = w2c
        d["landmarks3d"] = (d["landmarks3d"] - delta[:, None, :]).astype(np.float32)
        np.savez(p, **d)
    return dst


def test_same_camera_scores_like_the_training_frames(franck_avatar_work, tmp_path):
    from styletalker.animate import load_scene
    from styletalker.metrics import psnr
    from styletalker.reconstruct.evaluate import render_avatar_frame
    from styletalker.workfolder import WorkFolder
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.data import from_dataset

    other = _copy_work(franck_avatar_work, tmp_path / "same")
    r = cross_view_scores(franck_avatar_work, other, sheet=tmp_path / "sheet.png")
    ds = load_dataset(franck_avatar_work)
    assert r["frames"] == len(ds) and r["landmark_px"] < 1e-3
    # the same protocol as the held-out scores: render with the frame's own camera, compare with its target
    opts = WorkFolder(franck_avatar_work).data_options()
    data = from_dataset(ds, size=opts.get("size"), holdout_every=0, cut_margin=opts["cut_margin"],
                        background=tuple(opts["background"]))
    av = load_scene(franck_avatar_work).avatar
    want = np.mean([psnr(render_avatar_frame(av, data, i), data.target[i]) for i in range(len(ds))])
    assert r["psnr"] == pytest.approx(want, abs=1e-4)
    assert abs(r["aligned"]["psnr"] - r["psnr"]) < 0.05  # nothing to align
    assert abs(r["rig"]["psnr"] - r["psnr"]) < 0.05 and max(map(abs, r["rig"]["rotation_deg"])) < 0.05
    # the shape: the render's silhouette covers most of the head it was trained on (a tiny
    # test-preset avatar), and the frame cut to it (a perfect texture on this shape) scores above
    # the render
    assert r["iou"] > 0.7 and r["psnr_shape"] > r["psnr"] + 1.0, (r["iou"], r["psnr_shape"], r["psnr"])
    assert 0 < r["outline_share"] < 1
    assert (tmp_path / "sheet.png").is_file()
    with pytest.raises(InputError, match="itself"):
        cross_view_scores(franck_avatar_work, franck_avatar_work)


def test_alignment_takes_out_a_pose_error(franck_avatar_work, tmp_path):
    other = _copy_work(franck_avatar_work, tmp_path / "shifted", shift_x=0.1)
    ref = cross_view_scores(franck_avatar_work, _copy_work(franck_avatar_work, tmp_path / "same"), align=False)
    r = cross_view_scores(franck_avatar_work, other)
    # the other camera's "tracking" disagrees by a few pixels: the rendered scores drop, the
    # alignment fitted on landmarks recovers most of it
    assert r["landmark_px"] > 0.5
    assert r["psnr"] < ref["psnr"] - 0.3
    assert r["aligned"]["psnr"] > r["psnr"] + 0.2
    # a shift of the whole head in every frame is what one rigid pose for the camera models: the
    # rig fit explains the landmarks and gives back the score of the undisturbed camera
    before, after = r["rig"]["landmark_px"]
    assert before > 0.5 and after < 0.2 * before, (before, after)
    assert r["rig"]["shift_mm"] == pytest.approx(10.0, rel=0.2)  # 0.1 dm
    assert r["rig"]["psnr"] > ref["psnr"] - 0.2 and r["rig"]["psnr"] > r["aligned"]["psnr"], (r["rig"], r["aligned"])
    # the silhouette no longer sits on the other camera's head: IoU and shape ceiling drop
    assert r["iou"] < ref["iou"] - 0.02 and r["psnr_shape"] < ref["psnr_shape"] - 0.3
    # and more of the error is now on the outline
    assert r["outline_share"] > ref["outline_share"] + 0.05, (r["outline_share"], ref["outline_share"])


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} (the multi-view benchmark clips) is not there")
def test_multiview_benchmark_clips(tmp_path):
    from styletalker.preprocess import run_preprocess
    from styletalker.reconstruct import run_reconstruct

    works = {}
    for cam in ("view1", "view0"):
        works[cam] = tmp_path / cam
        run_preprocess(SHARED / f"nersemble_038_{cam}.mp4", works[cam], size=128, max_frames=16, progress=False)
    run_reconstruct(works["view1"], preset="test", progress=False)
    r = cross_view_scores(works["view1"], works["view0"])
    assert r["frames"] == 16 and 5 < r["psnr"] < 40 and 0 < r["ssim"] < 1
    # the two cameras' tracked poses put the same landmarks a few pixels apart, not tens
    assert r["landmark_px"] < 12
    y = yaw_sweep(works["view1"], yaws=(-30, 0, 30))
    assert y["yaws"] == [-30.0, 0.0, 30.0] and len(y["detected"]) == 3
    for req, got in zip(y["yaws"], y["tracked_yaw"]):
        if got is not None and req:
            assert np.sign(got) == np.sign(req)  # turned the way it was asked
