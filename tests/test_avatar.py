"""The mesh-anchored Gaussian avatar (styletalker.avatar): Gaussians ride on the stage-1 surface."""

from __future__ import annotations

import math

import pytest
import torch

from styletalker.avatar import EXPR_STATS, FrozenAvatar, GaussianAvatar, triangle_frames
from styletalker.render.common import quat_to_rotmat


@pytest.fixture(scope="module")
def avatar(franck_avatar_work):
    av = GaussianAvatar.load(franck_avatar_work / "reconstruct" / "avatar.pt")
    assert av.bound  # reconstruct anchors the Gaussians to the mesh by default
    return av


def _expressions(av):
    lo, hi = av.expr_min, av.expr_max
    return lo + 0.1 * (hi - lo), lo + 0.9 * (hi - lo)


def test_gaussians_sit_on_their_deformed_triangles(avatar):
    av = avatar
    for e in _expressions(av):
        with torch.no_grad():
            g = av(e)
            V = av.deformed_mesh(e)
            tri = V[av.mesh_faces[av.face_id]]
            R, area2 = triangle_frames(tri)
            area0 = triangle_frames(av.mesh_verts[av.mesh_faces[av.face_id]])[1]
            k = (area2 / area0).sqrt()[:, None]
            base = (av.bary[..., None] * tri).sum(1)
        # centre = barycentric point of the deformed triangle + its offset turned and stretched with it
        assert torch.allclose(g.means, base + k * (R @ av.offset[..., None])[..., 0], atol=1e-5)
        # offsets stay small against the head (the regulariser keeps Gaussians on the surface)
        assert float((g.means - base).norm(dim=-1).quantile(0.95)) < 0.1
        # the Gaussian's axes are the triangle's frame turned by its own rotation (plus the bounded
        # expression residual of MLP_attr)
        with torch.no_grad():
            q = av.quats + av._attribute_residuals(av.expression_input(e))[1]
        q = q / q.norm(dim=-1, keepdim=True)
        assert torch.allclose(quat_to_rotmat(g.quats), R @ quat_to_rotmat(q), atol=1e-4)


def test_expression_moves_gaussians_with_the_surface(avatar):
    import copy

    av = copy.deepcopy(avatar)
    with torch.no_grad():  # a clearly visible expression deformation (the test preset learns a tiny one)
        last = av.deform.net[-1]
        last.weight.add_(torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.3)
    a, b = _expressions(av)
    with torch.no_grad():
        ga, gb = av(a), av(b)
        va, vb = av.deformed_mesh(a), av.deformed_mesh(b)
    moved = (vb - va).norm(dim=-1)
    assert float(moved.mean()) > 1e-2  # the expression deforms the surface by about a millimetre or more
    # each Gaussian moves about as much as the vertices of its triangle
    tri_move = moved[av.mesh_faces[av.face_id]].mean(1)
    g_move = (gb.means - ga.means).norm(dim=-1)
    assert float((g_move - tri_move).abs().mean()) < 0.25 * float(tri_move.mean()) + 1e-4


def test_triangle_frames_are_rotations():
    tri = torch.randn(100, 3, 3)
    R, area2 = triangle_frames(tri)
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(100, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(100), atol=1e-5)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    assert torch.allclose(area2, torch.linalg.cross(e1, e2).norm(dim=-1), atol=1e-5)
    # turning the triangle turns its frame by the same rotation
    a = math.radians(40)
    Q = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    R2, _ = triangle_frames(tri @ Q.T)
    assert torch.allclose(R2, Q @ R, atol=1e-5)


def test_save_load_round_trip(avatar, tmp_path):
    avatar.save(tmp_path / "a.pt")
    back = GaussianAvatar.load(tmp_path / "a.pt")
    e = _expressions(avatar)[1]
    with torch.no_grad():
        g1, g2 = avatar(e), back(e)
    for f in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(g1, f), getattr(g2, f))
    assert back.config["expression_range"] and back.bound


def test_format1_free_avatar_still_loads(tmp_path):
    """Avatars written before the mesh anchor (free centres, no expression range) load and render."""
    xyz = torch.randn(50, 3) * 0.3
    av = GaussianAvatar(xyz, xyz[:5].clone(), feat_dim=8, n_freqs=2, hidden=16, init_scale=0.05)
    sd = {k: v for k, v in av.state_dict().items() if k not in EXPR_STATS and not k.startswith("expr_norm.")}
    cfg = {k: v for k, v in av.config.items() if k not in ("attr_bound", "clamp_expression")}
    torch.save({"format": "styletalker-avatar", "version": 1, "config": cfg, "state_dict": sd, "extra": {}},
               tmp_path / "old.pt")
    back = GaussianAvatar.load(tmp_path / "old.pt")
    assert not back.bound and not back.config.get("expression_range")
    with torch.no_grad():
        assert torch.allclose(back(torch.zeros(52)).means, av(torch.zeros(52)).means)


def test_mlps_see_expressions_in_units_of_the_clips_span(avatar):
    """ExpressionNorm (``model.expr_normalize``, on by default), fitted in stage 1 and carried into
    the avatar: every channel the clip moves spans exactly 1 at the MLPs' input between its
    training extremes, measured from the neutral frame; a channel the clip hardly moves (tracker
    noise) is not amplified."""
    from styletalker.models import EXPR_MIN_SPAN

    av = avatar
    assert torch.equal(av.expr_norm.shift, av.expr_neutral)
    assert torch.count_nonzero(av.expression_input(av.expr_neutral)) == 0
    span = av.expr_max - av.expr_min
    moving = span > EXPR_MIN_SPAN
    assert 0 < int(moving.sum()) < span.numel()  # a real clip moves some channels, not all
    d = av.expression_input(av.expr_max) - av.expression_input(av.expr_min)
    assert torch.allclose(d[moving], torch.ones(int(moving.sum())), atol=1e-5)
    assert torch.all(d[~moving] < 1) and torch.allclose(d[~moving], span[~moving] / EXPR_MIN_SPAN, atol=1e-5)
    # the raw inputs of an avatar saved before the normalisation stay raw
    old = GaussianAvatar.from_state(av.config, {k: v for k, v in av.state_dict().items() if not k.startswith("expr_norm.")})
    assert torch.equal(old.expression_input(av.expr_max), av.expr_max)


def _same_gaussians(av, frozen, e):
    with torch.no_grad():
        g1, g2 = av(e), frozen(e)
    for f in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(g1, f), getattr(g2, f)), f


def test_frozen_avatar_gives_the_same_gaussians(avatar):
    """FrozenAvatar (expression-independent work cached, per-triangle frames) computes exactly
    the forward's Gaussians: anchored, edited (colour residual), static attributes, unbounded ones."""
    for e in _expressions(avatar):
        _same_gaussians(avatar, FrozenAvatar(avatar), e)
    outside = avatar.expr_max + 0.5  # past the trained range: clamped (MLPs) and bounded (basis) by both
    _same_gaussians(avatar, FrozenAvatar(avatar), outside)
    edited = GaussianAvatar.from_state(avatar.config, avatar.state_dict())
    with torch.no_grad():
        edited.enable_color_offset().copy_(torch.randn(edited.num_points, 3, generator=torch.Generator().manual_seed(0)))
    _same_gaussians(edited, FrozenAvatar(edited), _expressions(avatar)[0])
    for bound in (0.0, None):
        other = GaussianAvatar.from_state({**avatar.config, "attr_bound": bound}, avatar.state_dict())
        with torch.no_grad():
            for p in other.attributes.parameters():
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))  # residuals that are not zero
        _same_gaussians(other, FrozenAvatar(other), _expressions(avatar)[1])


def test_frozen_free_avatar_gives_the_same_gaussians():
    xyz = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    av = GaussianAvatar(xyz, xyz[:5].clone(), feat_dim=8, n_freqs=2, hidden=16, init_scale=0.05, attr_bound=0.25)
    with torch.no_grad():
        for p in av.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    _same_gaussians(av, FrozenAvatar(av), torch.rand(52, generator=torch.Generator().manual_seed(3)))
