"""The live level of detail (styletalker.lod): exact contributions, pruning that keeps the kept
Gaussians unchanged, the pruned avatar close to the full one where it is used and the full avatar
everywhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker import lod
from styletalker.metrics import psnr


@pytest.fixture(scope="module")
def scene(franck_avatar_work):
    from styletalker.animate import load_scene

    return load_scene(franck_avatar_work)


def test_contributions_add_up_to_the_alpha_of_the_picture(scene):
    """Each Gaussian's weight sum_pixels alpha_i T_i; over all Gaussians that is sum (1 - T_final)."""
    from styletalker.render import render

    v = lod.ProbeView(scene.neutral_expression, scene.ref_pose, scene.K, scene.width, scene.height)
    w = lod.contributions(scene.avatar, [v])
    with torch.no_grad():
        g = scene.avatar(scene.neutral_expression)
        alpha = render(g.means, g.quats, g.scales, g.opacities, g.colors, v.camera()).alpha
    assert w.shape == (scene.avatar.num_points,) and float(w.min()) >= 0
    assert float(w.sum()) == pytest.approx(float(alpha.sum()), rel=1e-4)


def test_prune_keeps_the_kept_gaussians_unchanged(scene):
    av = scene.avatar
    keep = torch.zeros(av.num_points, dtype=torch.bool)
    keep[::3] = True
    small = lod.prune(av, keep)
    assert small.num_points == int(keep.sum())
    e = av.expr_max * 0.7
    with torch.no_grad():
        g, h = av(e), small(e)
    # the same Gaussians; the MLPs' matrix products on fewer rows may round differently (BLAS picks
    # its kernels by size and thread count), so equal to float precision, not bit for bit
    for f in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.allclose(getattr(g, f)[keep], getattr(h, f), rtol=1e-5, atol=1e-6), f


def test_live_lod_is_close_where_used_and_full_elsewhere(scene, tmp_path, monkeypatch):
    from styletalker.preprocess import load_dataset

    monkeypatch.setenv("STYLETALKER_LOD_CACHE", str(tmp_path / "lod"))
    scene.lod = None
    lo = lod.live_lod(scene)
    assert lo is scene.lod and 0 < lo.kept < scene.avatar.num_points
    assert len(list((tmp_path / "lod").glob("*.pt"))) == 1
    ds = load_dataset(scene.work)
    for i in range(0, ds.expression.shape[0], 7):  # the training frames: pruned avatar, within 35 dB of the full one
        s = scene.__class__(**{**scene.__dict__, "K": ds.K[i]})
        full = s.render(ds.expression[i], ds.world_to_cam[i])
        live = s.render(ds.expression[i], ds.world_to_cam[i], live=True)
        assert s.frozen_for(ds.world_to_cam[i], live=True) is lo.frozen
        assert not np.array_equal(full, live) and psnr(torch.from_numpy(live), torch.from_numpy(full)) > 35
    ref = scene.ref_pose.double().numpy()
    e = scene.neutral_expression
    for pose, scale in ((ref @ lod.turn(lo.pivot, 180, 0), 1.0), (ref @ lod.turn(lo.pivot, 45, 0), 1.0),
                        (ref @ lod.turn(lo.pivot, 0, -40), 1.0), (ref, 3.0 * lod.PROBE_HEIGHT / scene.height)):
        # behind, turned too far, zoomed in (3x the magnification probed)
        pose = torch.from_numpy(pose).float()
        assert scene.frozen_for(pose, scale, live=True) is scene.frozen
        assert np.array_equal(scene.render(e, pose, scale, live=True), scene.render(e, pose, scale))
    # a second load reads the contributions from the cache
    monkeypatch.setattr(lod, "contributions", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    scene.lod = None
    assert torch.equal(lod.live_lod(scene).keep, lo.keep)
    monkeypatch.setenv("STYLETALKER_LIVE_LOD", "0")
    assert lod.live_lod(scene) is None
