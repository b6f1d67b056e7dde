"""Expression retargeting (styletalker.retarget) on the real clips: another person's blendshapes
mapped onto the reconstructed avatar's own range."""

from __future__ import annotations

import numpy as np
import pytest

from styletalker.errors import InputError
from styletalker.retarget import avatar_range, clip_range, retarget_expressions


@pytest.fixture(scope="module")
def driver_track(driver_video):
    from styletalker.preprocess import track_video

    return track_video(driver_video, duration=4.0, fps=10, size=128, progress=False)


@pytest.fixture(scope="module")
def source(franck_avatar_work):
    from styletalker.animate import load_scene

    scene = load_scene(franck_avatar_work)
    rng = avatar_range(scene.avatar)
    assert rng is not None  # reconstruct stores the training range in the avatar
    return rng, scene


def test_avatar_stores_its_training_range(source, franck_avatar_work):
    from styletalker.preprocess import load_dataset

    rng, _ = source
    ds = load_dataset(franck_avatar_work)
    e = ds.expression.numpy()
    # the range was taken over the training frames (a subset of the clip)
    assert np.all(rng["min"] >= e.min(0) - 1e-6) and np.all(rng["max"] <= e.max(0) + 1e-6)
    assert np.all(rng["low"] >= rng["min"] - 1e-6) and np.all(rng["high"] <= rng["max"] + 1e-6)
    assert np.allclose(rng["neutral"], e[ds.neutral_frame], atol=1e-6)


def test_driver_lands_in_the_avatars_range(source, driver_track):
    rng, _ = source
    d = np.asarray(driver_track["expression"], np.float64)
    out = retarget_expressions(d, rng, "range")
    assert np.all(out >= rng["min"] - 1e-6) and np.all(out <= rng["max"] + 1e-6)
    lo_d, hi_d = clip_range(d)
    moving = (hi_d - lo_d >= 0.1) & (rng["high"] - rng["low"] > 0.05)
    assert moving.sum() >= 3  # jaw, blinks, ... move in both clips
    lo_o, hi_o = clip_range(out)
    # a channel the driver moves spans the avatar's own 5-95 % range after retargeting
    assert np.allclose(lo_o[moving], rng["low"][moving], atol=0.02)
    assert np.allclose(hi_o[moving], np.minimum(rng["high"][moving], rng["max"][moving]), atol=0.02)
    # raw keeps the driver's values; the driver goes outside the avatar's range somewhere
    assert np.allclose(retarget_expressions(d, rng, "raw"), d, atol=1e-6)
    assert (d > rng["max"] + 0.05).any() or (d < rng["min"] - 0.05).any()
    # order in time is kept per channel (a monotonic map): correlation 1 where not clamped
    j = int(np.argmax(np.where(moving, hi_d - lo_d, 0)))
    inside = (out[:, j] > rng["min"][j] + 1e-6) & (out[:, j] < rng["max"][j] - 1e-6)
    if inside.sum() > 3:
        assert np.corrcoef(out[inside, j], d[inside, j])[0, 1] > 0.999


def test_gain_exaggerates_and_damps(source, driver_track):
    rng, _ = source
    d = np.asarray(driver_track["expression"], np.float64)
    wide = dict(rng, min=np.full_like(rng["min"], -10.0), max=np.full_like(rng["max"], 10.0))  # no clamping
    base = retarget_expressions(d, wide, "range") - rng["low"]
    assert np.allclose(retarget_expressions(d, wide, "range", gain=2.0) - rng["low"], 2 * base, atol=1e-5)
    assert np.allclose(retarget_expressions(d, wide, "range", gain=0.5) - rng["low"], 0.5 * base, atol=1e-5)
    with pytest.raises(InputError, match="gain"):
        retarget_expressions(d, rng, gain=0.0)
    with pytest.raises(InputError, match="retarget"):
        retarget_expressions(d, rng, mode="mirror")


def test_clamped_avatar_ignores_out_of_range_expressions(source):
    """Far outside the trained range the MLPs see the range's edge; only the linear expression
    basis goes on, and stops EXTRAPOLATE training spans past the edge."""
    import torch

    from styletalker.models import ExpressionBasis

    _, scene = source
    av = scene.avatar
    assert av.config.get("clamp_expression")
    e = av.expr_max.clone() + 3.0  # far outside what the avatar was trained on
    edge = av.expr_max + ExpressionBasis.EXTRAPOLATE * (av.expr_max - av.expr_min)
    a, b, c = av(e), av(av.expr_max.clone()), av(edge)
    assert torch.allclose(a.colors, b.colors) and torch.allclose(a.opacities, b.opacities)
    assert torch.allclose(a.means, c.means) and not torch.allclose(a.means, b.means)


def test_cli_retarget_options(franck_avatar_work, driver_video, tmp_path, capsys):
    from styletalker.cli import main

    out = tmp_path / "a.mp4"
    for bad in (["--expression-gain", "0"], ["--retarget", "mirror"]):
        with pytest.raises(SystemExit) as e:
            main(["animate", str(franck_avatar_work), "--driver", str(driver_video), "-o", str(out)] + bad)
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err and not out.exists()


def test_auto_stretches_a_calm_driver_and_keeps_a_wide_one(source, driver_track):
    """``auto``: a channel the driver moves less than the avatar's clip did is mapped onto the
    avatar's range (as ``range``); one it moves more keeps its own size (``range`` would shrink
    it onto the avatar's); the avatar, not the retargeting, bounds the result."""
    rng, _ = source
    d = np.asarray(driver_track["expression"], np.float64)
    lo_d, hi_d = clip_range(d)
    out = retarget_expressions(d, rng)
    ranged = retarget_expressions(d, rng, "range")
    assert np.all(out >= 0) and np.all(out <= 1)
    span_d, span_s = hi_d - lo_d, rng["high"] - rng["low"]
    wide = (span_d >= 0.1) & (span_d > span_s)  # the driver moves more than the avatar's clip
    calm = (span_d >= 0.1) & (span_d < span_s)
    assert wide.any()
    inside = (out > 1e-6) & (out < 1 - 1e-6)
    keep = inside & wide[None]
    assert np.allclose((out - rng["low"])[keep], (d - lo_d)[keep], atol=1e-5)
    within = inside & calm[None] & (ranged > rng["min"] + 1e-6) & (ranged < rng["max"] - 1e-6)
    assert np.allclose(out[within], ranged[within], atol=1e-5)
    j = int(np.argmax(np.where(wide, span_d - span_s, -1)))
    assert np.ptp(out[:, j]) > np.ptp(ranged[:, j]) + 0.05
    assert np.corrcoef(out[:, j], d[:, j])[0, 1] > 0.99
    half = retarget_expressions(d, rng, gain=0.5)
    both = keep & (half > 1e-6)
    assert np.allclose((half - rng["low"])[both], 0.5 * (d - lo_d)[both], atol=1e-5)
