"""Hands in front of the face (preprocess/hands.py) on real clips: found and masked on the Pexels
clip where the person holds her hand to her face, none on franck.webm, left out of training and
scoring, never the neutral frame; --no-hands and folders preprocessed before hands existed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from styletalker.preprocess import load_dataset, run_preprocess
from styletalker.preprocess.geometry import valid_region
from styletalker.reconstruct.data import from_dataset

WINDOW = {"start": 1.5, "duration": 4.0, "fps": 5, "size": 128}  # 20 frames, the hand comes up at ~2.4 s


@pytest.fixture(scope="module")
def hands_work(tmp_path_factory, hands_video):
    work = tmp_path_factory.mktemp("hands") / "work"
    run_preprocess(hands_video, work, progress=False, **WINDOW)
    return work


def test_hands_over_the_face_are_found_and_left_out(hands_work):
    ds = load_dataset(hands_work)
    man = ds.manifest
    occ = ds.occluders[..., 0].numpy() > 0.5
    masks = ds.masks[..., 0].numpy() > 0.5
    covered = man["occluded_frames"]
    # the hand is at the face for most of the window (seen in the clip: from ~2.4 s on)
    assert len(covered) >= len(ds) // 2, covered
    assert len(covered) < len(ds), "the first frames show no hand"
    assert json.loads((hands_work / "preprocess" / "stage.json").read_text())["occluded_frames"] == len(covered)
    src = man["source"]
    inside = valid_region(man["crop_box"], src["width"], src["height"], WINDOW["size"]) > 0  # not crop padding
    for k in covered:
        area = (occ[k] & inside).sum()
        # a hand region, not the whole crop, and part of the person (the segmenter takes hands as person)
        assert 0.01 * occ[k].size < area < 0.4 * occ[k].size
        assert (occ[k] & inside & masks[k]).sum() >= 0.9 * area
    assert ds.neutral_frame not in covered
    # training and scoring leave the hand's pixels out, nothing else changes
    data = from_dataset(ds)
    v = data.valid[..., 0].numpy() > 0.5
    assert not (v & occ).any()
    free = [k for k in range(len(ds)) if not occ[k].any()]
    assert free and all(v[k].sum() > 0 for k in free)
    assert data.head[..., 0].numpy()[occ].max() == 0


def test_no_hands_on_a_clip_without_them(franck_work):
    ds = load_dataset(franck_work)
    assert ds.manifest["occluded_frames"] == []
    assert float(ds.occluders.sum()) == 0.0


def test_no_hands_option_and_older_folders(hands_work, hands_video, tmp_path, capsys):
    from styletalker.cli import main

    work = tmp_path / "off"
    assert main(["-q", "preprocess", str(hands_video), str(work), "--start", "1.5", "--duration", "4", "--fps", "5",
                 "--size", "128", "--no-hands"]) == 0
    ds = load_dataset(work)
    assert not (work / "preprocess" / "occluders").exists() and "occluded_frames" not in ds.manifest
    assert float(ds.occluders.sum()) == 0.0
    assert torch.equal(ds.masks, load_dataset(hands_work).masks)  # the person masks do not change
    # a folder written before hands existed (its record lacks the option): served as it is
    from styletalker.workfolder import _record_fingerprint

    rec, stage = work / "preprocess" / "config.json", work / "preprocess" / "stage.json"
    r = json.loads(rec.read_text())
    del r["options"]["hands"]
    r["fingerprint"] = _record_fingerprint(r)  # as the older version wrote it
    rec.write_text(json.dumps(r))
    s = json.loads(stage.read_text())
    if "fingerprint" in s:
        s["fingerprint"] = r["fingerprint"]
        stage.write_text(json.dumps(s))
    st = stage.read_bytes()
    assert main(["preprocess", str(hands_video), str(work), "--start", "1.5", "--duration", "4", "--fps", "5",
                 "--size", "128"]) == 0
    assert "already complete" in capsys.readouterr().err
    assert stage.read_bytes() == st


def test_resumed_run_finds_the_same_hands(hands_work, hands_video, tmp_path, monkeypatch):
    """Interrupted while the hand is at the face and resumed: the same occluder masks as a run in one
    go (hands are tracked from frame to frame, so a resumed run must not start tracking mid-clip)."""
    import styletalker.preprocess.pipeline as pl

    real_mask, calls = pl.person_mask, {"n": 0}

    def flaky_mask(*a, **k):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real_mask(*a, **k)

    work = tmp_path / "w"
    monkeypatch.setattr(pl, "person_mask", flaky_mask)
    with pytest.raises(KeyboardInterrupt):
        run_preprocess(hands_video, work, progress=False, **WINDOW)
    monkeypatch.undo()
    run_preprocess(hands_video, work, progress=False, **WINDOW)
    a, b = load_dataset(work), load_dataset(hands_work)
    assert a.manifest["occluded_frames"] == b.manifest["occluded_frames"]
    assert torch.equal(a.occluders, b.occluders)
