"""The edit loop on a synthetic avatar (no reconstruction needed): Eq. 8 localises edits; resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from styletalker.avatar import GaussianAvatar
from styletalker.reconstruct.data import ReconData
from styletalker.edit.editors import Editor
from styletalker.edit.loop import EditOptions, edit_avatar, lr_at, slugify
from styletalker.render import Camera


class SpillEditor(Editor):
    """Toy diffusion-like editor: paints the whole image red with amount clip(b, 0, 1) (so a strong
    edit also 'spills' everywhere, far from the landmarks)."""

    name = "toy"

    def edit(self, render, original, prompt, b, face, seed=None):
        s = float(np.clip(b, 0, 1))
        return (original + s * (np.array([0.95, 0.05, 0.05], np.float32) - original)).astype(np.float32)


def _synthetic(n_views=6, size=40):
    torch.manual_seed(0)
    g = torch.linspace(-1, 1, 22)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    xyz = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.zeros(xx.numel())], -1)
    lm = torch.tensor([[x, y, 0.0] for x in (-0.2, 0.0, 0.2) for y in (-0.2, 0.0, 0.2)])  # landmarks at the centre
    av = GaussianAvatar(xyz, lm, feat_dim=8, n_freqs=2, hidden=32, init_scale=0.06, init_opacity=0.95)
    with torch.no_grad():
        av.features.copy_(torch.cat([xyz[:, :2], torch.randn(xyz.shape[0], 6) * 0.3], 1))
    K = Camera.from_fov(size, size, 40.0).K
    Ks, poses, targets = [], [], []
    for k in range(n_views):
        a = 0.15 * np.sin(k)
        R = torch.tensor([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], dtype=torch.float32)
        P = torch.eye(4)
        P[:3, :3] = R
        P[2, 3] = 3.2
        Ks.append(K)
        poses.append(P)
        with torch.no_grad():
            targets.append(av.render(torch.zeros(52), Camera(K, P, size, size), background=torch.ones(3)).image)
    N = n_views
    ones = torch.ones(N, size, size, 1)
    data = ReconData(images=torch.stack(targets), masks=ones, valid=ones, head=ones, target=torch.stack(targets),
                     K=torch.stack(Ks), world_to_cam=torch.stack(poses), expression=torch.zeros(N, 52),
                     landmarks3d=torch.zeros(N, 478, 3), neutral_index=0, train_idx=torch.arange(N - 1),
                     test_idx=torch.tensor([N - 1]), background=(1.0, 1.0, 1.0), y_cut=1.0, width=size, height=size)
    return av, data


def _centre_and_edge_change(av0, av1, data):
    i = int(data.test_idx[0])
    with torch.no_grad():
        r0 = av0.render(torch.zeros(52), data.camera(i), background=torch.ones(3)).image
        r1 = av1.render(torch.zeros(52), data.camera(i), background=torch.ones(3)).image
    d = (r1 - r0).abs().mean(-1)
    H = d.shape[0]
    c = d[int(0.4 * H):int(0.6 * H), int(0.4 * H):int(0.6 * H)].mean()
    edge = torch.cat([d[: int(0.2 * H)].reshape(-1), d[-int(0.2 * H):].reshape(-1)]).mean()
    return float(c), float(edge), float((r1 - r0)[..., 0][int(0.4 * H):int(0.6 * H), int(0.4 * H):int(0.6 * H)].mean())


def test_landmark_weighting_localises_the_edit():
    av0, data = _synthetic()
    res = {}
    for weighting in ("eq8", "none"):
        av = copy.deepcopy(av0)
        opts = EditOptions(prompt="paint it red", iters=150, weighting=weighting, seed=0, alpha=5.0)
        st = edit_avatar(av, data, SpillEditor(), opts, show_progress=False)
        assert st.iteration == 150 and st.n_edits == 150  # builtin-like default: a fresh edit every iteration
        res[weighting] = _centre_and_edge_change(av0, av, data)
        # MLP_deform, positions and features are untouched
        for name in ("xyz", "features"):
            assert torch.equal(getattr(av, name), getattr(av0, name))
        for p, q in zip(av.deform.parameters(), av0.deform.parameters()):
            assert torch.equal(p, q)
    c8, e8, red8 = res["eq8"]
    cn, en, redn = res["none"]
    # Eq. 8: near the landmarks only strong edits (b >= 0.5) supervise -> redder centre;
    # far away only weak edits (b < 0.5) supervise -> the spill is suppressed
    assert red8 > 1.3 * redn and redn > 0.05
    assert e8 < 0.2 * en
    assert c8 / max(e8, 1e-6) > 5 * cn / max(en, 1e-6)
    # the loop's cached colours are exactly what GaussianAvatar.forward computes
    from styletalker.edit.loop import _gaussians

    assert av.color_offset.abs().max() > 0.1
    with torch.no_grad():
        cached = _gaussians(av, data.expression[0], 0, "color", {}).colors
        assert torch.allclose(cached, av(data.expression[0]).colors, atol=1e-5)


def test_resume_gives_the_same_result():
    av0, data = _synthetic(n_views=4, size=24)
    opts = EditOptions(prompt="x", iters=12, seed=3, update_every=3, checkpoint_every=5, train="color+mlp")
    full = copy.deepcopy(av0)
    st_full = edit_avatar(full, data, SpillEditor(), opts, show_progress=False)

    saved = {}

    class Stop(Exception):
        pass

    def ckpt(av, opt, rng, st):
        if st.iteration == 5:
            saved.update(model=copy.deepcopy(av.state_dict()), opt=copy.deepcopy(opt.state_dict()),
                         rng=copy.deepcopy(rng.bit_generator.state), torch_rng=torch.get_rng_state(),
                         state=copy.deepcopy(st))
            raise Stop

    part = copy.deepcopy(av0)
    with pytest.raises(Stop):
        edit_avatar(part, data, SpillEditor(), opts, show_progress=False, on_checkpoint=ckpt)
    resumed = copy.deepcopy(av0)
    resumed.enable_color_offset()
    resumed.load_state_dict(saved["model"])
    torch.set_rng_state(saved["torch_rng"])
    st = edit_avatar(resumed, data, SpillEditor(), opts, show_progress=False, state=saved["state"],
                     optimizer_state=saved["opt"], rng_state=saved["rng"])
    assert st.iteration == 12 and st.n_edits == st_full.n_edits
    assert [h[:3] for h in st.history] == [h[:3] for h in st_full.history]
    for (n, p), (_, q) in zip(resumed.state_dict().items(), full.state_dict().items()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_options_and_helpers():
    from styletalker.errors import InputError

    assert slugify("Turn him into a BRONZE statue!") == "turn-him-into-a-bronze-statue"
    assert lr_at(0, 100, 1.0) == pytest.approx(1.0) and lr_at(99, 100, 1.0) == pytest.approx(0.05)
    assert EditOptions("x").resolved_update_every() == 1
    assert EditOptions("x", editor="ip2p").resolved_update_every() == 10
    for bad in (dict(iters=0), dict(alpha=-1), dict(weighting="foo"), dict(train="deform"), dict(b_std=-0.1)):
        with pytest.raises(InputError):
            EditOptions("x", **bad).validate()
