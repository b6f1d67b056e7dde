"""Unit tests of the reconstruction building blocks (no preprocessed video needed)."""

import math

import numpy as np
import pytest
import torch

from styletalker.errors import MissingModelError
from styletalker.reconstruct.mesh_io import read_obj, write_obj
from styletalker.reconstruct.raster import rasterize
from styletalker.reconstruct.tetgrid import build_tet_grid, marching_tets, tet_edges
from styletalker.render import Camera, look_at


def _sphere_mesh(res=32, r=0.93):
    g = build_tet_grid(res, 1.5)
    return g, marching_tets(g.verts, g.verts.norm(dim=1) - r, g.tets)


def test_marching_tets_sphere_closed_and_accurate():
    r = 0.93
    g, m = _sphere_mesh(32, r)
    # vertices on the sphere (linear interpolation error is small for a 0.094 cell)
    rad = m.verts.norm(dim=1)
    assert float((rad - r).abs().max()) < 0.01
    f = m.faces
    # closed 2-manifold: every undirected edge has exactly two faces ...
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, counts = torch.unique(e.sort(1).values, dim=0, return_counts=True)
    assert int(counts.min()) == 2 and int(counts.max()) == 2
    # ... consistently oriented (each directed edge once) and outward (positive volume)
    assert torch.unique(e, dim=0).shape[0] == e.shape[0]
    v = m.verts
    vol = float((v[f[:, 0]] * torch.linalg.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6)
    assert vol == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)
    # Euler characteristic of a sphere
    assert v.shape[0] - counts.shape[0] + f.shape[0] == 2
    # precomputed edges give the same surface
    m2 = marching_tets(g.verts, g.verts.norm(dim=1) - r, g.tets, edges=tet_edges(g.tets, g.num_verts))
    assert torch.equal(m2.faces, m.faces) and torch.allclose(m2.verts, m.verts)


def test_marching_tets_gradients_move_surface():
    g = build_tet_grid(12, 1.5)
    sdf = (g.verts.norm(dim=1) - 0.8).requires_grad_(True)
    m = marching_tets(g.verts, sdf, g.tets)
    # d(mean radius)/d(sdf) < 0: lowering the SDF grows the surface
    m.verts.norm(dim=1).mean().backward()
    assert sdf.grad is not None and float(sdf.grad.sum()) < 0
    assert g.sample(g.verts[:, :1], torch.tensor([[0.3, -0.2, 0.1]]))[0, 0] == pytest.approx(0.3, abs=1e-5)


def _cam(W=64, H=64, dist=5.0):
    return Camera.from_fov(W, H, 30, look_at((0, 0, -dist), (0, 0, 0)))


def test_rasterize_silhouette_colour_and_gradient():
    _, m = _sphere_mesh(24, 0.93)
    cam = _cam(96, 96)
    hard = rasterize(m.verts, m.faces, None, cam.K, cam.world_to_cam, 96, 96, soft=False)
    f = float(cam.K[0, 0])
    r_px = f * 0.93 / math.sqrt(25 - 0.93**2)
    assert float(hard.alpha.sum()) == pytest.approx(math.pi * r_px**2, rel=0.02)
    # depth at the centre pixel is the front of the sphere
    assert float(hard.depth[48, 48, 0]) == pytest.approx(5 - 0.93, abs=0.02)
    # constant vertex colour -> that colour inside, background outside
    col = torch.tensor([0.2, 0.4, 0.6]).expand_as(m.verts)
    out = rasterize(m.verts, m.faces, col, cam.K, cam.world_to_cam, 96, 96, background=(1, 1, 1))
    assert torch.allclose(out.image[48, 48], torch.tensor([0.2, 0.4, 0.6]), atol=1e-5)
    assert torch.allclose(out.image[0, 0], torch.ones(3))
    # the soft silhouette is differentiable w.r.t. geometry: d(coverage)/d(scale) matches
    # finite differences and is positive
    s = torch.tensor(1.0, requires_grad=True)
    a = rasterize(m.verts * s, m.faces, None, cam.K, cam.world_to_cam, 96, 96).alpha.sum()
    a.backward()
    h = 0.01
    with torch.no_grad():
        fd = (rasterize(m.verts * (1 + h), m.faces, None, cam.K, cam.world_to_cam, 96, 96).alpha.sum()
              - rasterize(m.verts * (1 - h), m.faces, None, cam.K, cam.world_to_cam, 96, 96).alpha.sum()) / (2 * h)
    # analytic: d(pi r^2)/ds = 2 pi r^2 at s = 1
    assert float(s.grad) > 0
    assert float(s.grad) == pytest.approx(float(fd), rel=0.35)
    assert float(fd) == pytest.approx(2 * math.pi * r_px**2, rel=0.1)


def test_dmtet_silhouette_fit_grows_surface():
    """The full differentiable chain (blurred SDF -> marching tets -> soft raster -> IoU) fits a
    bigger target silhouette from the initial sphere."""
    from styletalker.reconstruct.dmtet import DMTetHead
    from styletalker.reconstruct.mesh_stage import soft_iou_loss

    torch.manual_seed(0)
    model = DMTetHead(torch.zeros(4, 3), res=16, extent=1.6, radius=0.7)
    cams = [look_at((5 * math.sin(a), 0, -5 * math.cos(a)), (0, 0, 0)) for a in np.linspace(-1, 1, 5)]
    K = _cam(48, 48).K
    _, target = _sphere_mesh(32, 1.0)
    masks = [rasterize(target.verts * torch.tensor([1.0, 1.2, 1.0]), target.faces, None, K, w, 48, 48, soft=False).alpha
             for w in cams]
    opt = torch.optim.Adam([model.sdf], lr=1e-2)
    losses = []
    for it in range(60):
        k = it % len(cams)
        m = model.extract()
        r = rasterize(m.verts, m.faces, None, K, cams[k], 48, 48)
        loss = soft_iou_loss(r.alpha, masks[k], torch.ones_like(masks[k]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 0.3
    assert np.mean(losses[-5:]) < 0.08


def test_obj_roundtrip(tmp_path):
    _, m = _sphere_mesh(8, 0.9)
    cols = np.random.default_rng(0).random((m.verts.shape[0], 3))
    p = tmp_path / "m.obj"
    write_obj(p, m.verts.numpy(), m.faces.numpy(), cols, header="test")
    v, f, c = read_obj(p)
    assert np.allclose(v, m.verts.numpy(), atol=1e-5)
    assert np.array_equal(f, m.faces.numpy())
    assert np.allclose(c, cols, atol=1e-4)


def test_orbit_cameras_span():
    from styletalker.reconstruct.prior import orbit_cameras

    w2c = look_at((0, 0, -3), (0, 0, 0))
    cams = orbit_cameras(torch.eye(3), w2c, (0.0, 0.0, 0.0), 32, 32, n=6, span_deg=120)
    assert len(cams) == 6 and cams.yaw_deg[0] == pytest.approx(-60) and cams.yaw_deg[-1] == pytest.approx(60)
    # every camera still looks at the head centre from the same distance
    for k in range(6):
        W = cams.world_to_cam[k]
        c = -W[:3, :3].T @ W[:3, 3]
        assert float(c.norm()) == pytest.approx(3.0, abs=1e-5)
    # the yaw between the extreme cameras is 120 degrees
    R0, R5 = cams.world_to_cam[0][:3, :3], cams.world_to_cam[5][:3, :3]
    ang = math.degrees(math.acos(max(-1.0, min(1.0, (float(torch.trace(R0 @ R5.T)) - 1) / 2))))
    assert ang == pytest.approx(120, abs=1e-3)


def test_svd_prior_missing_model_errors(tmp_path):
    from styletalker.reconstruct.prior import get_prior

    with pytest.raises(MissingModelError, match="--prior-model"):
        get_prior("svd", None)
    with pytest.raises(MissingModelError, match="not found"):
        get_prior("svd", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingModelError, match="model_index.json"):
        get_prior("svd", tmp_path / "empty")


class _RunsCode:
    """A pickled object whose loading would run code (here: create a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_checkpoints_round_trip_rng_and_refuse_code(tmp_path, capsys):
    import random

    from styletalker.reconstruct.checkpoint import load_state, save_state

    ck = tmp_path / "checkpoint.pt"
    np.random.seed(3), random.seed(3), torch.manual_seed(3)
    save_state(ck, model={"w": torch.ones(2)}, iteration=7, info={"seconds": 1.5}, config={"size": (1, 2), "x": None})
    expected = np.random.rand(), random.random(), float(torch.rand(()))
    np.random.rand(5), random.random(), torch.rand(5)  # move every generator on
    st = load_state(ck)  # with weights_only=True
    assert st["iteration"] == 7 and torch.equal(st["model"]["w"], torch.ones(2))
    assert (np.random.rand(), random.random(), float(torch.rand(()))) == expected  # RNGs restored exactly
    # a checkpoint carrying a pickled object (someone else's work folder) is refused, not run
    marker = tmp_path / "code_ran"
    torch.save({"iteration": 3, "payload": _RunsCode(marker)}, ck)
    assert load_state(ck) is None and not marker.exists()
    assert "ignoring unreadable checkpoint" in capsys.readouterr().err
    ck.write_bytes(b"garbage")
    assert load_state(ck) is None


def test_checkpoint_of_an_earlier_version_still_loads(tmp_path):
    """Earlier versions pickled np.random.get_state() (a numpy array): still read, safely."""
    import random

    from styletalker.reconstruct.checkpoint import load_state

    np.random.seed(5)
    ck = tmp_path / "old.pt"
    torch.save({"iteration": 2, "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                        "python": random.getstate()}}, ck)
    expected = np.random.rand()
    np.random.rand(3)
    st = load_state(ck)
    assert st is not None and st["iteration"] == 2 and np.random.rand() == expected


def test_mouth_weight_covers_the_mouth_and_nothing_else(franck_work):
    """gauss.train.w_mouth: the colour loss weighs the mouth of every real frame (outer lip line of
    its tracked landmarks, filled and grown 2 px) 1 + w_mouth times, every other pixel as before."""
    from styletalker.reconstruct.data import mouth_masks
    from styletalker.reconstruct.gauss_stage import SampleSource
    from styletalker.workfolder import WorkFolder

    data = WorkFolder(franck_work).training_views()
    m = mouth_masks(data)
    lm = data.landmarks2d

    def at(i, k):
        x, y = lm[i, k].floor().long().tolist()
        return float(m[i, y, x, 0])

    for i in range(len(data)):
        assert all(at(i, k) == 1 for k in (13, 14, 61, 291, 0, 17))  # inner lips, corners, outer lips
        assert all(at(i, k) == 0 for k in (1, 152, 33, 263))  # nose tip, chin, eye corners
    share = (m * data.head).sum((1, 2, 3)) / data.head.sum((1, 2, 3))
    assert 0.005 < float(share.min()) and float(share.max()) < 0.1  # a small part of the head
    base, weighted = SampleSource(data), SampleSource(data, w_mouth=10.0)
    used = base.rgb_weight > 0
    ratio = weighted.rgb_weight[used] / base.rgb_weight[used]
    inside = m.expand_as(base.rgb_weight)[used] > 0
    assert torch.allclose(ratio[inside], torch.tensor(11.0)) and torch.allclose(ratio[~inside], torch.tensor(1.0))


def test_stage1_state_saved_before_the_expression_normalisation_loads_as_raw():
    """A stage-1 model state without ``expr_norm.*`` (saved before it existed) loads strictly, and
    its MLPs see raw expressions again even when the fresh model had been fitted."""
    from styletalker.reconstruct.dmtet import DMTetHead

    m = DMTetHead(torch.zeros(5, 3), res=4, hidden=8, feat_dim=4, n_freqs=1)
    old = {k: v for k, v in m.state_dict().items() if not k.startswith("expr_norm.")}
    e = torch.rand(20, 52)
    m.expr_norm.fit(e, e[0])
    assert not torch.equal(m.expr_norm(e[1]), e[1])
    m.load_state_dict(old)  # strict
    assert torch.equal(m.expr_norm(e[1]), e[1])
    m.expr_norm.fit(e, e[0])
    back = DMTetHead(torch.zeros(5, 3), res=4, hidden=8, feat_dim=4, n_freqs=1)
    back.load_state_dict(m.state_dict())
    assert torch.equal(back.expr_norm(e[1]), m.expr_norm(e[1]))
