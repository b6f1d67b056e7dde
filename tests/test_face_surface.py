"""Stage 1's face-surface term (reconstruct/mesh_stage.py, ``mesh.train.w_face``) on the real clip:
where on MediaPipe's face mesh it holds the surface, and that minimising it alone moves the starting
hull onto the tracked face."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from styletalker.reconstruct.data import symmetric_face, symmetry_x
from styletalker.reconstruct.mesh_stage import (FACE_FULL_FACING, FACE_MIN_FACING, _inside_polygon, face_surface_loss,
                                                face_surface_samples)


@pytest.fixture(scope="module")
def start(franck_work):
    """(data, model): the clip at the cpu preset's grid, the model at its starting hull."""
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct import config as C
    from styletalker.reconstruct.data import from_options
    from styletalker.reconstruct.pipeline import build_mesh_model, set_initial_shape

    cfg = C.make_config("cpu", "cpu")
    data = from_options(load_dataset(franck_work), asdict(cfg.data))
    model = build_mesh_model(cfg, data)
    set_initial_shape(model, cfg, data)
    return data, model


def test_samples_face_forward_and_skip_the_lips(start):
    from styletalker.edit.regions import LIPS_INNER, LIPS_OUTER

    data, _ = start
    lm = data.neutral_landmarks
    faces = data.extra["face_faces"]
    assert faces.shape == (898, 3)
    pts, n, w = face_surface_samples(lm, faces)
    every, _, _ = face_surface_samples(lm, faces, min_facing=-2.0)
    assert 0.8 * every.shape[0] < pts.shape[0] < every.shape[0]  # a few edge-on triangles left out
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(n)), atol=1e-5)
    facing = -n[:, 2]
    assert bool((facing > FACE_MIN_FACING).all())  # turned to the camera's side of the head (-z)
    # full weight where the face looks forward, fading towards its edge-on sides
    assert bool((w[facing >= FACE_FULL_FACING] == 1).all()) and bool((w[facing < FACE_FULL_FACING] < 1).all())
    assert 0.3 < float((w == 1).float().mean()) < 1
    # ... and away from the head's inside (its centre: stage 1's starting sphere)
    from styletalker.reconstruct.pipeline import sphere_init

    centre = sphere_init(data)[0]
    assert float(((pts - centre) * n).sum(-1).gt(0).float().mean()) > 0.95
    assert not bool(_inside_polygon(pts[:, :2], lm[LIPS_OUTER, :2]).any())
    # (the polygon test itself: the inner lip contour lies inside the outer one)
    assert bool(_inside_polygon(lm[LIPS_INNER, :2], lm[LIPS_OUTER, :2]).all())


def test_the_held_face_is_the_symmetric_part_of_the_tracked_one(start):
    data, _ = start
    lm, mirror = data.neutral_landmarks, data.extra["face_mirror"]
    assert bool((mirror[mirror] == torch.arange(468)).all())  # partners of partners
    assert 10 < int((mirror == torch.arange(468)).sum()) < 60  # the midline's landmarks are their own
    s = symmetric_face(lm, mirror)
    x_sym = symmetry_x(lm)
    m = s[mirror].clone()
    m[:, 0] = 2 * x_sym - m[:, 0]
    assert torch.allclose(s, m, atol=1e-5)  # mirror-symmetric about the stage-1 surface's plane
    # where the camera sees it (x, y) it stays on the tracked face; the depth is what it evens out
    moved = (s - lm[:468]).abs()
    assert float(moved[:, :2].norm(dim=-1).mean()) < 0.02  # decimetres: under 2 mm on average
    assert float(moved[:, 2].mean()) > float(moved[:, :2].norm(dim=-1).mean())


def test_the_term_alone_moves_the_hull_onto_the_tracked_face(start):
    data, model = start
    lm, faces = symmetric_face(data.neutral_landmarks, data.extra["face_mirror"]), data.extra["face_faces"]
    pts, _, _ = face_surface_samples(lm, faces)

    def distance():  # mean distance (dm) from the face samples to the extracted surface's vertices
        with torch.no_grad():
            v = model.extract().verts
        return float(torch.cdist(pts, v).min(1).values.mean())

    before = distance()
    sdf0 = model.sdf.detach().clone()
    opt = torch.optim.Adam([model.sdf], lr=2e-3)
    try:
        losses = []
        for _ in range(60):
            loss = face_surface_loss(model, model.grid_fields()[0], lm, faces)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        after = distance()
    finally:
        with torch.no_grad():
            model.sdf.copy_(sdf0)
    assert losses[-1] < 0.5 * losses[0]
    print(f"distance {before * 100:.2f} -> {after * 100:.2f} mm")
    assert after < 0.75 * before, (before, after)
