"""Cross-camera scoring (`styletalker evaluate --views`) and the turn-away check, on real clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_backdrop_check_finds_the_backdrop_colour_on_the_person(franck_work):
    from styletalker.crossview import BackdropCheck
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.data import CHIN, from_dataset, project_landmarks

    data = from_dataset(load_dataset(franck_work))
    check = BackdropCheck(data)
    # the sample clip's backdrop is blue: told apart from the person's colours
    assert check.measurable and check.backdrop[2] > check.backdrop[0] + 0.3, check.backdrop
    i = int(data.test_idx[0])
    img, head = data.images[i].numpy().copy(), data.head[i, ..., 0].numpy()
    lm = data.landmarks3d[i:i + 1, CHIN:CHIN + 1]
    chin = float(project_landmarks(data.K[i:i + 1], data.world_to_cam[i:i + 1], lm)[0, 0, 1])
    s0 = check.share(img, head, rows=chin)
    assert s0 is not None and s0 < 0.15
    # a fifth of the head above the chin mixed half and half with the backdrop: that share is found
    ys, xs = np.nonzero(head[: int(chin)] > 0.5)
    pick = np.random.default_rng(0).permutation(len(ys))[: len(ys) // 5]
    img[ys[pick], xs[pick]] = 0.5 * img[ys[pick], xs[pick]] + 0.5 * check.backdrop
    s1 = check.share(img, head, rows=chin)
    assert 0.15 < s1 - s0 < 0.25, (s0, s1)
    # composited on white with its alpha, the same image gives the same share
    a = head[..., None]
    assert check.share(img * a + (1 - a), head, background=(1, 1, 1), rows=chin) == pytest.approx(s1, abs=0.01)
    # a backdrop of the person's own colours cannot be told apart: not measured
    skin = data.images[i][data.head[i, ..., 0] > 0.5].median(0).values
    data.images[:] = torch.where(data.masks > 0.5, data.images, skin)
    flat = BackdropCheck(data)
    assert not flat.measurable and flat.share(img, head) is None and flat.frames_share is None


def test_unmixing_takes_the_backdrop_out_of_the_outline(franck_work):
    from styletalker.crossview import BackdropCheck
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.data import CHIN, colour_targets, edge_band, from_dataset, project_landmarks

    data = from_dataset(load_dataset(franck_work))
    check = BackdropCheck(data)
    raw, _ = colour_targets(data, 0, False)
    clean, trusted = colour_targets(data, 0, True)
    assert raw is data.images and colour_targets(data, 0, True)[0] is clean  # cached
    chin = project_landmarks(data.K, data.world_to_cam, data.landmarks3d[:, CHIN:CHIN + 1])[:, 0, 1]
    before, after = [], []
    for i in range(0, len(data), 4):
        head = data.head[i, ..., 0].numpy()
        before.append(check.share(raw[i].numpy(), head, rows=float(chin[i])))
        after.append(check.share(clean[i].numpy(), head * trusted[i, ..., 0].numpy(), rows=float(chin[i])))
    # the frames' own outline holds the blue backdrop; the colours fitted hold less than half of it
    assert np.mean(after) < 0.5 * np.mean(before), (np.mean(before), np.mean(after))
    # only the outline changes: pixels more than the unmixing radius inside the head keep their colour
    far = (data.head * (1 - edge_band(data.head, 4))) > 0.5
    assert torch.equal(clean[far[..., 0]], raw[far[..., 0]])
    assert (trusted[far] == 1).all()


def test_evaluate_turn(franck_avatar_work, tmp_path, capsys):
    import json

    from styletalker.cli import main

    work = _copy_work(franck_avatar_work, tmp_path / "w")
    shutil.copytree(franck_avatar_work / "reconstruct", work / "reconstruct")
    assert main(["evaluate", str(work), "--turn"]) == 0
    out = capsys.readouterr().out
    assert "turned away" in out and "+60 deg" in out and "backdrop share" in out
    m = json.loads((work / "reconstruct" / "metrics.json").read_text())["turn"]
    assert m["yaws"] == [float(y) for y in range(-60, 61, 15)] and len(m["detected"]) == 9
    assert m["detected"][4]  # the avatar from the front is a face
    # the sample clip's blue backdrop is told from the person; the renders hold less of it than the frames' outline
    b = m["backdrop"]
    assert b["colour"][2] > b["colour"][0] and 0 <= b["mean"] < b["frames"], b
    assert (work / "reconstruct" / "renders" / "turn.png").stat().st_size > 0
