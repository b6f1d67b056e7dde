"""The linear expression basis (styletalker.models.ExpressionBasis): the clip's own tracked face
landmarks, as a linear function of the blendshapes, move the surface beside MLP_deform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker.avatar import FrozenAvatar, GaussianAvatar
from styletalker.models import ExpressionBasis

LOWER_LIP, CHIN = 17, 152


@pytest.fixture(scope="module")
def tracking(franck_work):
    d = np.load(franck_work / "preprocess" / "tracking.npz")
    return torch.from_numpy(d["expression"]).float(), torch.from_numpy(d["landmarks3d"]).float()


@pytest.fixture(scope="module")
def no_basis_work(franck_work, tmp_path_factory):
    """The test clip reconstructed with ``model.expr_basis=false`` (preset "test")."""
    import shutil

    from styletalker.reconstruct import run_reconstruct

    work = tmp_path_factory.mktemp("no_basis")
    shutil.copytree(franck_work / "preprocess", work / "preprocess")
    run_reconstruct(work, preset="test", progress=False, **{"model.expr_basis": False})
    return work


@pytest.fixture(scope="module")
def jaw_channel(franck_work):
    import json

    return json.loads((franck_work / "preprocess" / "manifest.json").read_text())["expression_names"].index("jawOpen")


def test_basis_predicts_the_tracked_mouth_on_frames_it_was_not_fitted_to(tracking):
    """Fitted to three quarters of the real clip, the basis predicts the others' tracked
    landmarks: less than half the error of not moving them, and the lower lip's and chin's
    vertical motion at r > 0.8."""
    E, L = tracking
    n = len(E)
    test = torch.arange(n) % 4 == 2
    fit_rows = torch.nonzero(~test)[:, 0]
    neutral = int(fit_rows[int(E[fit_rows].abs().sum(1).argmin())])
    basis = ExpressionBasis()
    rows = torch.cat([fit_rows[fit_rows != neutral], torch.tensor([neutral])])
    basis.fit(E[rows], L[rows], len(rows) - 1)
    assert basis.fitted and basis.anchors.shape == L.shape[1:]
    with torch.no_grad():
        pred = torch.stack([basis(basis.anchors, E[t]) for t in torch.nonzero(test)[:, 0]])
    truth = L[test] - L[neutral]
    err, still = (pred - truth).norm(dim=-1).mean(), truth.norm(dim=-1).mean()
    assert float(err) < 0.5 * float(still)
    for lm in (LOWER_LIP, CHIN):
        assert float(truth[:, lm, 1].std()) > 5e-3  # the clip moves them by millimetres (dm units)
        r = np.corrcoef(pred[:, lm, 1].numpy(), truth[:, lm, 1].numpy())[0, 1]
        assert r > 0.8, (lm, r)
    # at the neutral expression nothing moves
    assert torch.count_nonzero(basis(basis.anchors, E[neutral])) == 0


def test_basis_moves_the_face_and_fades_out_away_from_it(tracking):
    E, L = tracking
    basis = ExpressionBasis()
    basis.fit(E, L, 0)
    a = basis.anchors
    # a landmark moves mostly by its own fitted displacement (shared with a landmark that nearly
    # coincides with it, such as the inner lips of a closed mouth); a point 5 cm away from every
    # landmark (behind the head) does not move
    t = int((L[:, LOWER_LIP, 1] - L[0, LOWER_LIP, 1]).abs().argmax())
    idx, w = basis.weights(a)
    assert torch.equal(idx[:, 0], torch.arange(len(a))) and float(w[:, 0].min()) >= 0.5 and float(w[:, 0].median()) > 0.85
    behind = a.mean(0) + torch.tensor([0.0, 0.0, -1.5])  # 15 cm behind the face's centre
    far = torch.stack([behind, behind + torch.tensor([0.3, 0.0, 0.0])])
    assert float(torch.cdist(far, a).min()) > 0.5
    assert float(basis(far, E[t]).abs().max()) < 1e-6
    assert float(basis(a, E[t])[LOWER_LIP].norm()) > 0.005  # the lip drops by more than 0.5 mm


def test_states_saved_before_the_basis_load_as_no_motion(franck_avatar_work, no_basis_work, tracking, jaw_channel):
    """The reconstruction fits the basis (``model.expr_basis``, on by default) and carries it from
    stage 1 into the avatar, and ``model.expr_basis=false`` leaves it out;
    an avatar or stage-1 state without ``basis.*`` loads strictly and moves only by MLP_deform,
    and the fast FrozenAvatar gives the same Gaussians as the avatar."""
    from styletalker.reconstruct.dmtet import DMTetHead

    E, _ = tracking
    av = GaussianAvatar.load(franck_avatar_work / "reconstruct" / "avatar.pt")
    assert av.basis.fitted
    assert not GaussianAvatar.load(no_basis_work / "reconstruct" / "avatar.pt").basis.fitted
    e = E[int(E[:, jaw_channel].argmax())]  # the clip's widest jawOpen
    with torch.no_grad():
        full = av.deformed_mesh(e) - av.mesh_verts
        old = GaussianAvatar.from_state(av.config, {k: v for k, v in av.state_dict().items() if not k.startswith("basis.")})
        assert not old.basis.fitted
        mlp_only = old.deformed_mesh(e) - old.mesh_verts
        assert float((full - mlp_only).norm(dim=-1).max()) > 0.005
        g1, g2 = av(e), FrozenAvatar(av)(e)
    for f in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(g1, f), getattr(g2, f))
    m = DMTetHead(torch.zeros(5, 3), res=4, hidden=8, feat_dim=4, n_freqs=1)
    before = m.state_dict()
    m.basis.fit(E, torch.randn(len(E), 5, 3) * 0.01, 0)
    back = DMTetHead(torch.zeros(5, 3), res=4, hidden=8, feat_dim=4, n_freqs=1)
    back.load_state_dict(m.state_dict())
    assert torch.equal(back.basis(m.basis.anchors, E[3]), m.basis(m.basis.anchors, E[3]))
    back.load_state_dict({k: v for k, v in before.items() if not k.startswith("basis.")})  # strict
    assert not back.basis.fitted and torch.count_nonzero(back.basis(m.basis.anchors, E[3])) == 0


def test_basis_goes_past_the_training_range_by_a_bounded_amount(franck_avatar_work, jaw_channel):
    """Past the trained range the MLPs see the clamped expression, the linear basis goes on for
    :attr:`ExpressionBasis.EXTRAPOLATE` training spans and stops there; FrozenAvatar agrees."""
    av = GaussianAvatar.load(franck_avatar_work / "reconstruct" / "avatar.pt")
    assert av.config.get("clamp_expression") and av.basis.fitted
    span = av.expr_max - av.expr_min
    one = torch.zeros_like(span)
    one[jaw_channel] = 1.0
    top = av.expr_neutral.clone()
    top[jaw_channel] = av.expr_max[jaw_channel]
    edge = top + ExpressionBasis.EXTRAPOLATE * span * one
    past, far = top + 0.5 * ExpressionBasis.EXTRAPOLATE * span * one, top + 10 * span * one
    with torch.no_grad():
        g = {k: av(e) for k, e in (("top", top), ("past", past), ("edge", edge), ("far", far))}
        mesh = {k: av.deformed_mesh(e) for k, e in (("top", top), ("past", past), ("edge", edge), ("far", far))}
        frozen = FrozenAvatar(av)(far)
    for k in ("past", "edge", "far"):  # the MLPs: clamped
        assert torch.equal(g[k].colors, g["top"].colors) and torch.equal(g[k].opacities, g["top"].opacities)
    step1 = (mesh["past"] - mesh["top"]).norm(dim=-1).max()
    step2 = (mesh["edge"] - mesh["top"]).norm(dim=-1).max()
    assert float(step1) > 1e-4  # the mouth opens further past the clip's widest jawOpen
    assert abs(float(step2) - 2 * float(step1)) < 0.02 * float(step2)  # linearly
    assert torch.equal(mesh["far"], mesh["edge"])  # and no further than EXTRAPOLATE spans
    for f in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(frozen, f), getattr(g["far"], f))
