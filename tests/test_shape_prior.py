"""The starting shape of the stage-1 surface (reconstruct/shape_prior.py) on the real clip."""

from __future__ import annotations

import pytest
import torch

from styletalker.reconstruct.config import MeshOptions
from styletalker.reconstruct.shape_prior import head_occupancy, occupancy_to_sdf
from styletalker.reconstruct.tetgrid import build_tet_grid, marching_tets

DEPTH = MeshOptions().depth_ratio


@pytest.fixture(scope="module")
def prior(franck_work):
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.data import from_dataset
    from styletalker.reconstruct.pipeline import sphere_init

    data = from_dataset(load_dataset(franck_work))
    c, r = sphere_init(data)
    g = build_tet_grid(32, MeshOptions().extent * r)
    lattice = g.verts + c
    occ = head_occupancy(lattice, data, depth_ratio=DEPTH)
    return data, g, lattice, occ


def test_prior_fits_the_training_silhouettes(prior):
    from styletalker.reconstruct.raster import rasterize

    data, g, lattice, occ = prior
    m = marching_tets(lattice, occupancy_to_sdf(occ, g.cell), g.tets)
    ious = []
    for i in data.train_idx[::6].tolist():
        a = rasterize(m.verts, m.faces, None, data.K[i], data.world_to_cam[i], data.width, data.height,
                      soft=False).alpha[..., 0] > 0.5
        a &= data.valid[i][..., 0] > 0
        h = data.head[i][..., 0] > 0
        ious.append(float((a & h).sum() / (a | h).sum()))
    assert min(ious) > 0.8, ious  # the hull reproduces what the camera saw


def test_prior_is_a_closed_symmetric_head(prior):
    data, g, lattice, occ = prior
    n = g.res + 1
    assert torch.equal(occ, occ.flip(2))  # symmetric about the face's plane
    P = lattice.reshape(n, n, n, 3)
    L = data.neutral_landmarks
    width = float((L[234] - L[454]).norm())
    z_in = P[..., 2][occ]
    # closed behind at a head's depth, open to nowhere: nothing in front of the nose or past the back
    assert float(z_in.min()) > float(L[1, 2]) - 0.08 - g.cell
    assert abs(float(z_in.max()) - (float(L[1, 2]) + DEPTH * width)) < 2 * g.cell
    # the tracked face lies on the starting surface (within a cell or two)
    sdf = occupancy_to_sdf(occ, g.cell)
    from styletalker.reconstruct.tetgrid import TetGrid

    grid = TetGrid(lattice - lattice.mean(0), g.tets, g.res, g.extent)
    s = grid.sample(sdf[:, None], L[:468] - lattice.mean(0))[:, 0]
    assert float(s.abs().median()) < 1.5 * g.cell


def test_sdf_of_an_occupancy():
    occ = torch.zeros(9, 9, 9, dtype=torch.bool)
    occ[2:7, 2:7, 2:7] = True
    sdf = occupancy_to_sdf(occ, 0.1).reshape(9, 9, 9)
    assert float(sdf[4, 4, 4]) == pytest.approx(-0.25)  # 2.5 cells inside (half a cell to the zero level)
    assert float(sdf[4, 4, 0]) == pytest.approx(0.15)  # 2 cells outside
    assert bool((sdf[occ] < 0).all()) and bool((sdf[~occ] > 0).all())


def test_egg_slices_are_widest_behind_the_middle(prior):
    """``egg`` > 0 (mesh.egg): a horizontal slice of the starting shape is the ellipse's in front
    (the face) and wider at the back, its mass further back; still symmetric."""
    data, g, lattice, _ = prior
    n = g.res + 1
    P = lattice.reshape(n, n, n, 3)
    L = data.neutral_landmarks
    ell = head_occupancy(lattice, data, depth_ratio=DEPTH, egg=0.0)
    egg = head_occupancy(lattice, data, depth_ratio=DEPTH, egg=1.0)
    assert torch.equal(egg, egg.flip(2))
    j = int((P[0, :, 0, 1] - L[234, 1]).abs().argmin())  # the slice at ear height
    z = P[:, j, 0, 2]
    width_e = ell[:, j].sum(1).float()
    width_g = egg[:, j].sum(1).float()
    inside = width_e > 0
    zs = z[inside]
    front = inside & (z < zs.min() + 0.3 * (zs.max() - zs.min()))
    back = inside & (z > zs.min() + 0.6 * (zs.max() - zs.min()))
    assert torch.equal(width_g[front], width_e[front])
    assert float(width_g[back].sum()) > float(width_e[back].sum())
    assert float((width_g * z).sum() / width_g.sum()) > float((width_e * z).sum() / width_e.sum())


@pytest.mark.parametrize("depth", [DEPTH, 3.0])
def test_the_starting_surface_is_closed(prior, depth):
    """The starting surface closes inside the grid (every edge shared by two triangles), also for a
    head deeper than the grid (a small grid for a wide face): cut flat one cell before its back
    face. (The hull of a camera at face height does not bound the top of the head: it reached the
    grid's top face, and the surface was open there.)"""
    data, g, lattice, _ = prior
    n = g.res + 1
    P = lattice.reshape(n, n, n, 3)
    occ = head_occupancy(lattice, data, depth_ratio=depth)
    if depth > 2:
        back = int(P[:, 0, 0, 2].argmax())
        assert not bool(occ[back].any()) and bool(occ[back - 1].any())  # it did reach the back, cut there
    m = marching_tets(lattice, occupancy_to_sdf(occ, g.cell), g.tets)
    f = m.faces.long()
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(1).values
    _, counts = torch.unique(e, dim=0, return_counts=True)
    assert bool((counts == 2).all()), counts.bincount()


def _front_depth(occ, lattice, points) -> torch.Tensor:
    """z (decimetres) where each point's lattice column (nearest x, y) first enters ``occ``."""
    n = occ.shape[0]
    P = lattice.reshape(n, n, n, 3)
    xs, ys, zs = P[0, 0, :, 0], P[0, :, 0, 1], P[:, 0, 0, 2]
    out = []
    for p in points:
        col = occ[:, int((ys - p[1]).abs().argmin()), int((xs - p[0]).abs().argmin())]
        out.append(float(zs[int(torch.nonzero(col)[0])]) if bool(col.any()) else float("nan"))
    return torch.tensor(out)


def test_the_symmetric_hull_starts_at_the_faces_symmetric_part(prior):
    """MediaPipe's depths shear a tracked face (its depth changes in proportion to x; -1.2..8.9
    degrees over the demo clip, 17.6 on the Pexels clip's neutral frame). Carved from both sides,
    as the symmetric hull does, the tracked face set both cheeks back to the deeper side's depth;
    its symmetric part (``face="symmetric"``, ``mesh.hull_face``) is the same with and without a shear."""
    from dataclasses import replace

    from styletalker.reconstruct.data import symmetric_face, symmetry_x

    data, g, lattice, occ = prior
    L = data.neutral_landmarks
    sheared = L.clone()
    sheared[:, 2] += 0.3 * (L[:, 0] - symmetry_x(L))  # 16.7 degrees
    lm = data.landmarks3d.clone()
    lm[data.neutral_index] = sheared
    other = replace(data, landmarks3d=lm)
    assert torch.equal(occ, head_occupancy(lattice, data, depth_ratio=DEPTH, face="tracked"))  # the default
    occ = head_occupancy(lattice, data, depth_ratio=DEPTH, face="symmetric")
    sym = head_occupancy(lattice, other, depth_ratio=DEPTH, face="symmetric")
    tracked = head_occupancy(lattice, other, depth_ratio=DEPTH)
    face = symmetric_face(L, data.extra["face_mirror"])
    sides = (face[:, 0] - symmetry_x(L)).abs() > 0.4  # over 4 cm from the midline
    z0, z_sym, z_tr = (_front_depth(o, lattice, face[sides]) for o in (occ, sym, tracked))
    back_sym, back_tr = float((z_sym - z0).nanmedian()), float((z_tr - z0).nanmedian())
    print(f"sides set back by the shear: {back_sym * 100:.1f} mm (symmetric part), {back_tr * 100:.1f} mm (as tracked)")
    assert abs(back_sym) < 0.5 * g.cell and back_tr > 1.5 * g.cell
    assert int((sym ^ occ).sum()) < 0.01 * int(occ.sum())
