"""Tetrahedral grid and differentiable marching tetrahedra (DMTet, Shen et al. 2021) in PyTorch.

The grid is a regular cube lattice over ``[-extent, extent]^3`` with ``res`` cells per axis; each
cube is split into 6 tetrahedra along its main diagonal (Kuhn / Freudenthal subdivision). All
cubes use the same split, so neighbouring tetrahedra share faces and the extracted surface is
watertight.

Marching tetrahedra places one surface vertex on every grid edge whose end points have SDF values
of opposite sign, at the linear zero crossing::

    p = (s_a * x_b - s_b * x_a) / (s_a - s_b)

which is differentiable w.r.t. both the SDF values ``s`` and the (deformable) grid positions ``x``.
Any other per-vertex quantity (the learnable features ``f``) is interpolated with the same weights.
Convention: SDF < 0 inside, > 0 outside; triangles are oriented with outward normals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# the 6 edges of a tetrahedron (local vertex ids)
TET_EDGES = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]], dtype=torch.long)
_EDGE_ID = {(int(a), int(b)): i for i, (a, b) in enumerate(TET_EDGES.tolist())}


def _eid(a: int, b: int) -> int:
    return _EDGE_ID[(min(a, b), max(a, b))]


def _triangle_table() -> tuple[torch.Tensor, torch.Tensor]:
    """(16, 2, 3) tet-edge ids of the (up to two) triangles for each inside/outside code.

    Bit i of the code is set when local vertex i is inside. Orientation is fixed afterwards
    (see :func:`marching_tets`), so only the topology matters here.
    """
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    count = torch.zeros(16, dtype=torch.long)
    for code in range(16):
        inside = [i for i in range(4) if code >> i & 1]
        outside = [i for i in range(4) if not code >> i & 1]
        if len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            table[code, 0] = torch.tensor([_eid(lone, o) for o in others])
            count[code] = 1
        elif len(inside) == 2:
            a, b = inside
            c, d = outside
            # the four crossing edges form the cycle ac, ad, bd, bc
            q = [_eid(a, c), _eid(a, d), _eid(b, d), _eid(b, c)]
            table[code, 0] = torch.tensor([q[0], q[1], q[2]])
            table[code, 1] = torch.tensor([q[0], q[2], q[3]])
            count[code] = 2
    return table, count


TRI_TABLE, TRI_COUNT = _triangle_table()


@dataclass
class TetGrid:
    """A cube lattice split into tetrahedra.

    verts: (V,3) lattice positions; tets: (T,4) vertex ids; res: cells per axis; extent: half size.
    Vertex (i, j, k) (x, y, z lattice coordinates) has id ``i + (res+1) * (j + (res+1) * k)``.
    """

    verts: torch.Tensor
    tets: torch.Tensor
    res: int
    extent: float

    @property
    def cell(self) -> float:
        return 2 * self.extent / self.res

    @property
    def num_verts(self) -> int:
        return self.verts.shape[0]

    def sample(self, values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Trilinearly interpolate per-vertex ``values`` (V,C) at ``points`` (P,3) -> (P,C).

        Uses the undeformed lattice (grid offsets are ignored); points outside are clamped.
        """
        n = self.res + 1
        vol = values.T.reshape(1, values.shape[1], n, n, n)  # (1,C,z,y,x)
        g = (points / self.extent).clamp(-1, 1).reshape(1, 1, 1, -1, 3).to(values.dtype)
        out = F.grid_sample(vol, g, mode="bilinear", align_corners=True, padding_mode="border")
        return out.reshape(values.shape[1], -1).T


def build_tet_grid(res: int, extent: float) -> TetGrid:
    if res < 2:
        raise ValueError("tet grid resolution must be >= 2")
    n = res + 1
    lin = torch.linspace(-extent, extent, n)
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    verts = torch.stack([x, y, z], -1).reshape(-1, 3)

    i, j, k = torch.meshgrid(torch.arange(res), torch.arange(res), torch.arange(res), indexing="ij")
    base = (i + n * (j + n * k)).reshape(-1)
    step = torch.tensor([1, n, n * n])
    corner = lambda bits: base + sum(int(b) * int(s) for b, s in zip(bits, step))  # noqa: E731
    tets = []
    for perm in itertools.permutations(range(3)):
        bits = [0, 0, 0]
        path = [corner(bits)]
        for axis in perm:
            bits[axis] = 1
            path.append(corner(bits))
        tets.append(torch.stack(path, -1))
    tets = torch.cat(tets, 0)
    return TetGrid(verts, tets, res, float(extent))


def tet_edges(tets: torch.Tensor, num_verts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique edges (E,2) (sorted vertex ids) of a tet mesh and the (T,6) edge id of each tet edge."""
    e = tets[:, TET_EDGES.to(tets.device)].sort(-1).values  # (T,6,2)
    key = e[..., 0] * num_verts + e[..., 1]
    ukey, inv = torch.unique(key.reshape(-1), return_inverse=True)
    edges = torch.stack([ukey // num_verts, ukey % num_verts], -1)
    return edges, inv.reshape(-1, 6)


@dataclass
class MarchingResult:
    verts: torch.Tensor  # (M,3)
    faces: torch.Tensor  # (Fc,3) long, outward oriented
    attrs: torch.Tensor | None  # (M,C) interpolated per-vertex attributes (e.g. features)
    edges: torch.Tensor  # (M,2) grid vertex ids of the edge each surface vertex lies on
    weights: torch.Tensor  # (M,) interpolation weight t: p = (1-t) x_a + t x_b
    grid: tuple | None = None  # optional: the grid fields it was extracted from


def marching_tets(pos: torch.Tensor, sdf: torch.Tensor, tets: torch.Tensor, attrs: torch.Tensor | None = None,
                  edges: tuple[torch.Tensor, torch.Tensor] | None = None) -> MarchingResult:
    """Extract the zero level set of ``sdf`` (V,) defined on tetrahedra ``tets`` (T,4).

    ``pos`` (V,3) are the (possibly deformed) grid vertex positions. Differentiable w.r.t.
    ``pos``, ``sdf`` and ``attrs``. ``edges`` = :func:`tet_edges` output, precomputed once per
    grid to avoid a sort on every call.
    """
    dev = pos.device
    with torch.no_grad():
        if edges is None:
            edges = tet_edges(tets, pos.shape[0])
        all_edges, tedge = edges
        occ = sdf < 0
        tocc = occ[tets]
        cnt = tocc.sum(1)
        valid = (cnt > 0) & (cnt < 4)
        vt = tets[valid]
        tocc = tocc[valid]
        code = (tocc.long() * torch.tensor([1, 2, 4, 8], device=dev)).sum(1)
        ecross = occ[all_edges[:, 0]] != occ[all_edges[:, 1]]
        cross_ids = ecross.nonzero().squeeze(1)
        compact = torch.full((all_edges.shape[0],), -1, dtype=torch.long, device=dev)
        compact[cross_ids] = torch.arange(len(cross_ids), device=dev)
        edge_id = compact[tedge[valid]]  # (Tv,6), -1 for edges without a crossing
        ua, ub = all_edges[cross_ids, 0], all_edges[cross_ids, 1]

        tri = TRI_TABLE.to(dev)[code]  # (Tv,2,3)
        ntri = TRI_COUNT.to(dev)[code]
        faces = torch.cat([edge_id.gather(1, tri[:, 0].clamp_min(0)), edge_id.gather(1, tri[:, 1].clamp_min(0))], 0)
        keep = torch.cat([ntri >= 1, ntri >= 2], 0)
        faces = faces[keep]
        # inside -> outside direction per triangle, to orient normals outwards
        tpos = pos.detach()[vt]  # (Tv,4,3)
        w_in = tocc.to(pos.dtype)
        w_out = 1 - w_in
        c_in = (tpos * w_in[..., None]).sum(1) / w_in.sum(1, keepdim=True)
        c_out = (tpos * w_out[..., None]).sum(1) / w_out.sum(1, keepdim=True)
        d = torch.cat([c_out - c_in, c_out - c_in], 0)[keep]

    sa, sb = sdf[ua], sdf[ub]
    denom = sa - sb
    t = sa / torch.where(denom.abs() < 1e-12, torch.full_like(denom, 1e-12), denom)
    t = t.clamp(0, 1)
    verts = pos[ua] * (1 - t)[:, None] + pos[ub] * t[:, None]
    out_attrs = None
    if attrs is not None:
        out_attrs = attrs[ua] * (1 - t)[:, None] + attrs[ub] * t[:, None]
    with torch.no_grad():
        v = verts.detach()
        n = torch.linalg.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
        flip = (n * d).sum(-1) < 0
        faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return MarchingResult(verts, faces, out_attrs, torch.stack([ua, ub], -1), t)
