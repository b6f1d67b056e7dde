"""The built-in offline editor on real frames of the sample video (landmarks + mask from preprocessing)."""

from __future__ import annotations

import numpy as np
import pytest

from styletalker.edit.builtin import BuiltinEditor, parse_prompt
from styletalker.edit.regions import FaceInfo
from styletalker.errors import InputError


@pytest.fixture(scope="module")
def real_view(franck_work):
    from styletalker.preprocess import load_dataset

    ds = load_dataset(franck_work)
    i = int(ds.neutral_frame)
    img = ds.image(i).numpy()
    face = FaceInfo(ds.landmarks2d[i].numpy(), ds.mask(i)[..., 0].numpy())
    return img, face


@pytest.fixture(scope="module")
def editor():
    return BuiltinEditor()


def _change(a, b, m):
    d = np.abs(a - b).mean(-1)
    m = m > 0.5
    return float(d[m].mean())


def test_regions_from_real_landmarks(real_view):
    img, face = real_view
    reg = face.regions(img.shape[:2])
    H, W = img.shape[:2]
    assert 0.08 * H * W < reg["face"].sum() < 0.5 * H * W
    assert reg["eyes"].sum() > 5 and reg["lips"].sum() > 10 and reg["hair"].sum() > 50
    assert (reg["skin"] * reg["eyes"]).sum() == 0 and (reg["skin"] * reg["lips"]).sum() == 0
    assert (reg["face"] * reg["background"]).sum() < 0.02 * reg["face"].sum()
    ys, xs = np.nonzero(reg["face"])
    nose = face.landmarks[1]
    assert abs(xs.mean() + 0.5 - nose[0]) < 0.15 * face.face_width


def test_target_region_changes_most(real_view, editor):
    img, face = real_view
    reg = face.regions(img.shape[:2])
    out = editor.edit(None, img, "make his skin green", 0.5, face, seed=0)
    assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    skin = _change(out, img, reg["skin"] * reg["face"])
    rest = _change(out, img, reg["background"] + reg["clothing"])
    assert skin > 0.1
    assert skin > 5 * rest
    assert out[..., 1][reg["skin"] * reg["face"] > 0.5].mean() > img[..., 1][reg["skin"] * reg["face"] > 0.5].mean()


def test_strength_mapping_and_spill(real_view, editor):
    img, face = real_view
    reg = face.regions(img.shape[:2])
    target = reg["skin"] * reg["face"]
    outside = np.clip(reg["background"] + reg["clothing"], 0, 1)
    ch = {b: editor.edit(None, img, "make his skin green", b, face, seed=0) for b in (0.2, 0.5, 0.8, 1.0)}
    tgt = {b: _change(o, img, target) for b, o in ch.items()}
    out = {b: _change(o, img, outside) for b, o in ch.items()}
    assert tgt[0.2] < tgt[0.5] < tgt[0.8]
    assert tgt[0.2] < 0.5 * tgt[0.8]  # low b: weak edit
    assert out[1.0] > 0.08 and out[1.0] > 4 * out[0.5]  # high b: the edit bleeds beyond the face
    # statues restyle the whole head, and bleed at high b too
    s5 = editor.edit(None, img, "turn him into a bronze statue", 0.5, face, seed=0)
    s10 = editor.edit(None, img, "turn him into a bronze statue", 1.0, face, seed=0)
    assert _change(s5, img, reg["hair"]) > 0.03
    assert _change(s10, img, reg["background"]) > 3 * _change(s5, img, reg["background"])


def test_high_b_loses_identity(real_view, editor):
    """Landmarks detected on the edited image move more at b=1 than at b=0.5 (identity wash-out),
    and the wash-out is stochastic (seeded) while b below 0.6 is deterministic."""
    from styletalker.edit.metrics import LandmarkDetector

    img, face = real_view
    reg = face.regions(img.shape[:2])
    with LandmarkDetector() as det:
        ref = det.detect(img)
        assert ref is not None
        disp = {}
        for b in (0.5, 1.0):
            pts = det.detect(editor.edit(None, img, "make his skin green", b, face, seed=3))
            assert pts is not None
            disp[b] = float(np.linalg.norm(pts - ref, axis=1).mean())
    assert disp[1.0] > 2 * disp[0.5] and disp[1.0] > 0.5
    a = editor.edit(None, img, "make his skin green", 1.0, face, seed=0)
    b = editor.edit(None, img, "make his skin green", 1.0, face, seed=1)
    assert _change(a, b, reg["features"]) > 0.01
    c = editor.edit(None, img, "make his skin green", 0.5, face, seed=0)
    d = editor.edit(None, img, "make his skin green", 0.5, face, seed=1)
    assert np.array_equal(c, d)


@pytest.mark.parametrize("prompt,region", [
    ("make his skin blue", "skin"), ("purple skin", "skin"), ("hulk", "skin"),
    ("dye his hair blonde", "hair"), ("red hair", "hair"),
    ("turn him into a gold statue", "face"), ("marble statue", "face"), ("a statue", "face"),
    ("clown make-up", "face"), ("zombie", "face"), ("vampire", "lips"), ("red lipstick", "lips"),
    ("tan", "skin"), ("pale", "skin"), ("green eyes", "iris"), ("blue skin and blonde hair", "hair"),
])
def test_vocabulary(real_view, editor, prompt, region):
    img, face = real_view
    reg = face.regions(img.shape[:2])
    out = editor.edit(None, img, prompt, 0.7, face, seed=0)
    assert _change(out, img, reg[region]) > 0.04, prompt


def test_unknown_prompt_lists_vocabulary(editor):
    with pytest.raises(InputError) as e:
        parse_prompt("make it look like a van gogh painting")
    msg = str(e.value)
    assert "does not understand" in msg and "marble statue" in msg and "clown" in msg and "--editor ip2p" in msg
    with pytest.raises(InputError, match="unknown colour 'plaid'"):
        parse_prompt("make his skin plaid")
    with pytest.raises(InputError, match="empty"):
        editor.check_prompt("  ")
    with pytest.raises(InputError, match="unknown statue material"):
        parse_prompt("chocolate statue")
    assert [l.name for l in parse_prompt("Blue skin, blonde hair").layers] == ["blue skin", "blonde hair"]
