"""`styletalker evaluate`: the paper's metrics (CLIP-S, CLIP-DS, dlib identity, LPIPS) on the real
clip's tiny reconstruction and a built-in edit, with the tiny random CLIP by id (offline) and a
random AlexNet for LPIPS; and "unavailable: why" when the models cannot be had."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from styletalker.cli import main
from styletalker.evaluation import is_unavailable
from styletalker.workdir import read_json
from tiny_models import TINY_CLIP_ID

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def edited_work(franck_avatar_work, tmp_path_factory):
    """A copy of the shared reconstruction (this test writes metrics) with one finished built-in edit."""
    from styletalker.edit.loop import run_edit

    work = tmp_path_factory.mktemp("eval") / "work"
    shutil.copytree(franck_avatar_work, work, ignore=shutil.ignore_patterns("edits", "renders"))
    run_edit(work, "make his skin green", name="green", iters=40, progress_bars=False, evaluate=False, device="cpu")
    return work


@pytest.fixture
def alexnet_file(tmp_path):
    from test_perceptual import random_alexnet

    p = tmp_path / "alexnet.pth"
    torch.save(random_alexnet(), p)
    return p


def test_evaluate_computes_the_paper_metrics(edited_work, hf_offline, alexnet_file, capsys):
    from styletalker.clip_metrics import ClipScorer, clip_scores
    from styletalker.evaluation import heldout_lpips, orbit_renders
    from styletalker.perceptual import load_lpips

    rc = main(["evaluate", str(edited_work), "--clip-model", TINY_CLIP_ID, "--lpips-model", str(alexnet_file),
               "--device", "cpu", "--orbit-views", "6"])
    out = capsys.readouterr().out
    assert rc == 0 and "unavailable" not in out
    m = read_json(edited_work / "edits" / "green" / "metrics.json")["orbit"]
    assert m["views"] == 6 and m["clip_model"] == TINY_CLIP_ID and m["prompt"] == "make his skin green"
    for k in ("clip_score", "clip_score_original", "clip_directional", "lpips"):
        assert isinstance(m[k], float) and np.isfinite(m[k]), k
        assert f"orbit.{k}: {m[k]:.4f}" in out
    # the stored numbers are those of the orbit renders (edited vs original, same poses)
    orig, edit, poses = orbit_renders(edited_work, "green", "cpu", 6)
    assert len(orig) == 6 and not np.allclose(orig[0], edit[0])
    s = clip_scores(ClipScorer(TINY_CLIP_ID, device="cpu"), orig, edit, "make his skin green", "a photo of a person")
    assert np.isclose(m["clip_score"], s["clip_score"], atol=1e-5)
    assert np.isclose(m["clip_directional"], s["clip_directional"], atol=1e-5)
    lp = load_lpips(alexnet_file)
    assert np.isclose(m["lpips"], np.mean([lp.distance(a, b) for a, b in zip(edit, orig)]), atol=1e-6)
    assert m["lpips"] > 1e-3  # the edit changed the renders
    # dlib finds the (blurry, test-preset) face in half the views or more; a colour edit keeps the identity
    assert m["identity_views"] >= 3
    assert m["identity_distance"] < 0.6 and m["identity_same_fraction"] > 0.5
    # held-out LPIPS of the reconstruction, next to PSNR / SSIM
    rec = read_json(edited_work / "reconstruct" / "metrics.json")
    assert np.isclose(rec["lpips"], heldout_lpips(edited_work, lp)["lpips"], atol=1e-6)
    assert all("lpips" in f for f in rec["per_frame"])
    assert f"LPIPS: {rec['lpips']:.4f}" in out


def test_unavailable_metrics_say_why(edited_work, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch"))
    before = read_json(edited_work / "edits" / "green" / "metrics.json")
    rc = main(["evaluate", str(edited_work), "--device", "cpu", "--orbit-views", "2", "--json"])
    rep = __import__("json").loads(capsys.readouterr().out)
    assert rc == 0
    m = rep["edits"]["green"]["orbit"]
    for k in ("clip_score", "clip_directional", "lpips"):
        assert is_unavailable(m[k]), k
    assert "openai/clip-vit-large-patch14" in m["clip_score"] and "hf download" in m["clip_score"]
    assert "alexnet-owt-7be5be79.pth" in m["lpips"] and "--lpips-model" in m["lpips"]
    assert is_unavailable(rep["reconstruct"]["lpips"])
    stored = read_json(edited_work / "edits" / "green" / "metrics.json")["orbit"]
    assert stored["clip_score"] == m["clip_score"] and stored["views"] == 2
    # --no-write leaves the files alone; the printed report still says why
    main(["evaluate", str(edited_work), "--device", "cpu", "--orbit-views", "3", "--no-write"])
    out = capsys.readouterr().out
    assert "orbit.clip_score: unavailable: --clip-model openai/clip-vit-large-patch14" in out
    assert "LPIPS: unavailable: AlexNet weights" in out
    assert read_json(edited_work / "edits" / "green" / "metrics.json")["orbit"]["views"] == 2
    assert set(before) - {"orbit"} <= set(read_json(edited_work / "edits" / "green" / "metrics.json"))


def test_identity_scores_on_real_faces(franck_video, driver_video):
    from styletalker.evaluation import identity_scores
    from styletalker.video import iter_frames

    def frames(path, start):
        return [f for _, _, f in iter_frames(path, start=start, fps=1, max_frames=2)]

    franck, other = frames(franck_video, 10.0), frames(driver_video, 0.0)
    grey = [np.full_like(franck[0], 128)] * 2
    same = identity_scores(franck, franck[::-1])
    assert same["identity_views"] == 2 and same["identity_distance"] < 0.4 and same["identity_same_fraction"] == 1.0
    diff = identity_scores(franck, other)
    assert diff["identity_distance"] > 0.7 and diff["identity_same_fraction"] == 0.0
    lost = identity_scores(franck, grey)
    assert lost["identity_no_face_edited"] == 2 and lost["identity_distance"] == (
        "unavailable: dlib found no face in the edited avatar's renders")
    assert identity_scores(grey, franck)["identity_distance"].endswith("no face in the original avatar's renders")
