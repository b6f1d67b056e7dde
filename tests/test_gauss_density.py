"""Adaptive density control (clone / split / prune) and the Gaussian stage's scale and opacity
regularisers, on the avatar reconstructed from the real sample clip (franck_avatar_work)."""

import math
import shutil

import torch

from styletalker.avatar import GaussianAvatar
from styletalker.reconstruct import run_reconstruct
from styletalker.reconstruct.density import DensifyConfig, DensityControl
from styletalker.reconstruct.gauss_stage import GaussTrainConfig, make_optimizer, opacity_entropy


def _avatar(work) -> GaussianAvatar:
    return GaussianAvatar.load(work / "reconstruct" / "avatar.pt")


def test_clone_split_and_prune_pick_the_right_gaussians(franck_avatar_work):
    av = _avatar(franck_avatar_work)
    assert av.bound
    n = av.num_points
    opt = make_optimizer(av, GaussTrainConfig())
    cfg = DensifyConfig(start=0.0, stop=1.0, every=1, fraction=0.1, max_growth=2.0)
    dc = DensityControl(cfg, total_iters=10, n_initial=n)
    # one Adam step first, so every Gaussian has optimizer state to carry over
    for p in (av.offset, av.log_scales, av.opacity_logits):
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    with torch.no_grad():
        scales = av.log_scales.exp().max(-1).values
        med = float(scales.median())
        small = (scales < med).nonzero()[:, 0]
        av.log_scales[small[:5]] += math.log(3 * med) - av.log_scales[small[:5]].max(-1, keepdim=True).values
        big_ids = small[:5]  # made larger than split_scale x median: these split
        clone_ids = small[5:10]
        hot = torch.cat([big_ids, clone_ids])
        faint = small[20:27]
        av.opacity_logits[faint] = -8.0  # opacity 3e-4 < prune_opacity: pruned
    cfg.fraction = len(hot) / n + 1e-9  # exactly the hot ones are densified
    grad = torch.zeros_like(av.offset)
    grad[hot] = 1.0
    av.offset.grad = grad
    dc.accumulate(av, 0)
    faint_all = ((torch.sigmoid(av.opacity_logits) < cfg.prune_opacity) & ~torch.isin(torch.arange(n), hot)).detach()
    assert faint_all[faint].all()
    face_before = av.face_id.clone()
    ls_before = av.log_scales.detach().clone()
    rec = dc.step(av, opt, torch.Generator().manual_seed(0), 0)
    n_pruned = int(faint_all.sum())
    assert rec == {"iteration": 1, "cloned": 5, "split": 5, "pruned": n_pruned, "points": n + 5 + 10 - 5 - n_pruned}
    assert av.num_points == rec["points"]
    # the survivors keep their order, then the clones, then two children per split parent
    keep = torch.ones(n, dtype=torch.bool)
    keep[big_ids] = False
    keep[faint_all] = False
    m = int(keep.sum())
    assert torch.equal(av.face_id[:m], face_before[keep])
    assert torch.equal(av.face_id[m:m + 5], face_before[clone_ids])
    assert torch.equal(av.face_id[m + 5:], face_before[big_ids].repeat(2))
    assert torch.allclose(av.log_scales[m:m + 5], ls_before[clone_ids])
    assert torch.allclose(av.log_scales[m + 5:], ls_before[big_ids].repeat(2, 1) - math.log(1.6))
    b = av.bary[m:]
    assert (b >= 0).all() and torch.allclose(b.sum(-1), torch.ones(len(b)))
    assert (torch.sigmoid(av.opacity_logits) >= cfg.prune_opacity).all()
    # Adam's moments: kept for survivors, zero for the new rows, one row per Gaussian
    st = opt.state[av.opacity_logits]
    assert st["exp_avg"].shape[0] == av.num_points
    assert (st["exp_avg"][:m] != 0).all() and (st["exp_avg"][m:] == 0).all()


def _short_run(src, dst, **overrides) -> GaussianAvatar:
    dst.mkdir(parents=True)
    shutil.copytree(src / "preprocess", dst / "preprocess")
    run_reconstruct(dst, preset="test", progress=False, mesh_from=src / "reconstruct" / "mesh",
                    gauss_iters=60, **overrides)
    return _avatar(dst)


def test_opacity_and_scale_regularisers(franck_avatar_work, tmp_path):
    assert abs(float(opacity_entropy(torch.zeros(4))) - math.log(2)) < 1e-6
    assert float(opacity_entropy(torch.tensor([-60.0, 60.0]))) < 1e-12
    # max_scale 0.01 dm (0.1 by default, which the test preset's few Gaussians never reach)
    lim = math.log(0.01)
    small = {"gauss.train.max_scale": 0.01}
    base = _short_run(franck_avatar_work, tmp_path / "base", **small)
    reg = _short_run(franck_avatar_work, tmp_path / "reg", **small, **{"gauss.train.w_opacity": 1.0,
                                                                     "gauss.train.w_scale": 20.0})
    # the opacities pushed to 0 or 1, the large Gaussians shrunk, both against the same run without
    with torch.no_grad():
        h_base, h_reg = float(opacity_entropy(base.opacity_logits)), float(opacity_entropy(reg.opacity_logits))
    assert h_reg < 0.8 * h_base, (h_reg, h_base)
    # (Adam steps by ~lr whatever the weight, so the default 0.1 already pulls as hard as 20:
    # against no scale regulariser, the Gaussians above the limit shrink by ~lr_scales per step)
    none = _short_run(franck_avatar_work, tmp_path / "none", **small, **{"gauss.train.w_scale": 0.0})
    over_reg = float(torch.relu(reg.log_scales.detach() - lim).mean())
    over_none = float(torch.relu(none.log_scales.detach() - lim).mean())
    assert 0 < over_reg < over_none - 0.15, (over_reg, over_none)
