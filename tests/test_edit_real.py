"""`styletalker edit` on the real sample clip (shared tiny reconstruction): outputs, locality, no-op,
resume after an interruption."""

from __future__ import annotations

import pytest
import torch

from styletalker.avatar import GaussianAvatar
from styletalker.edit.loop import run_edit
from styletalker.errors import InputError, MissingStageError
from styletalker.workdir import is_complete, read_json


@pytest.fixture(scope="module")
def green_edit(franck_avatar_work):
    return run_edit(franck_avatar_work, "make his skin green", name="green", iters=60, progress_bars=False)


def test_edit_outputs_and_locality(franck_avatar_work, green_edit):
    out = green_edit
    assert is_complete(out)
    for f in ("avatar.pt", "checkpoint.pt", "config.json", "metrics.json", "previews/heldout.png",
              "previews/training.png", "dataset/strengths.json"):
        assert (out / f).is_file(), f
    assert len(list((out / "dataset").glob("*.png"))) >= 10
    m = read_json(out / "metrics.json")
    s = m["heldout"]
    assert s["views"] >= 2 and s["lmk_views"] == s["views"]
    # the skin edit changes the face and, with the landmark weighting, hardly anything else
    assert s["inside_face"] > 0.02
    assert s["inside_face"] > 3 * s["outside_face"]
    assert s["lmk_fail_ref"] + s["lmk_fail_edit"] < s["views"]
    # the edited avatar is a normal avatar file; its geometry and deformation are the reconstruction's
    src = GaussianAvatar.load(franck_avatar_work / "reconstruct" / "avatar.pt")
    ed = GaussianAvatar.load(out / "avatar.pt")
    e = torch.rand(52) * 0.5
    with torch.no_grad():
        g0, g1 = src(e), ed(e)
    assert torch.equal(g0.means, g1.means) and torch.equal(g0.scales, g1.scales)
    assert (g1.colors - g0.colors).abs().mean() > 0.01
    assert ed.extra["edit"]["prompt"] == "make his skin green"
    # greener where it was edited
    assert float(g1.colors[:, 1].mean() - g0.colors[:, 1].mean()) > 0


def test_complete_edit_is_a_noop(franck_avatar_work, green_edit):
    before = (green_edit / "avatar.pt").stat().st_mtime_ns
    run_edit(franck_avatar_work, "make his skin green", name="green", iters=60, progress_bars=False)
    assert (green_edit / "avatar.pt").stat().st_mtime_ns == before


def test_resume_after_interruption(franck_avatar_work, monkeypatch):
    from styletalker.edit import builtin

    kw = dict(iters=10, checkpoint_every=4, progress_bars=False, evaluate=False, seed=5)
    full = run_edit(franck_avatar_work, "clown make-up", name="clown-full", **kw)

    calls = {"n": 0}
    orig = builtin.BuiltinEditor.edit

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(builtin.BuiltinEditor, "edit", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_edit(franck_avatar_work, "clown make-up", name="clown-resumed", **kw)
    part = franck_avatar_work / "edits" / "clown-resumed"
    assert not is_complete(part) and not (part / "avatar.pt").exists()
    assert torch.load(part / "checkpoint.pt", weights_only=True)["iteration"] == 4
    monkeypatch.setattr(builtin.BuiltinEditor, "edit", orig)
    resumed = run_edit(franck_avatar_work, "clown make-up", name="clown-resumed", **kw)
    a = GaussianAvatar.load(full / "avatar.pt").color_offset
    b = GaussianAvatar.load(resumed / "avatar.pt").color_offset
    assert torch.allclose(a, b, atol=1e-6)
    assert read_json(full / "dataset" / "strengths.json") == read_json(resumed / "dataset" / "strengths.json")


def test_edit_errors(franck_work, tmp_path):
    import shutil

    w = tmp_path / "w"  # preprocessed, not reconstructed
    shutil.copytree(franck_work / "preprocess", w / "preprocess")
    with pytest.raises(InputError, match="does not understand"):
        run_edit(w, "paint him like picasso", progress_bars=False)
    with pytest.raises(InputError, match="--name"):
        run_edit(w, "green skin", name="../evil", progress_bars=False)
    with pytest.raises(MissingStageError, match="styletalker reconstruct"):
        run_edit(w, "green skin", progress_bars=False)
    assert not (w / "edits").exists()
