"""The starting shape of the stage-1 surface: the person's visual hull, closed at a head's depth.

A monocular video sees the head from one side. Its silhouettes bound the head sideways and
vertically (every point outside a frame's head mask is empty), but not in depth: the back and,
for a camera below the face, the top of the head lie in the "shadow" of the silhouette, where no
image loss ever acts. A unit sphere as the starting surface (the paper's choice) leaves that
shadow to chance: measured on a synchronised side camera of the benchmark sequence, the sphere
covers 73 % of the side camera's head mask, the fitted mesh 78 %, while the visual hull of the
training frames covers 94 % (docs/reconstruct.md). So the starting shape is built as:

1. **visual hull**: lattice points of the tet grid that project, in some training frame, inside
   the image and the valid region but outside the (slightly dilated) head mask are empty;
2. **face surface**: points in front of the tracked 3D face (the neutral frame's 468 landmarks,
   interpolated over their footprint, the nearest landmark's depth around it) are empty, so the
   face starts at its tracked depth (with ``face="symmetric"``, ``mesh.hull_face``, opt-in: the
   landmarks' mirror-symmetric part, without MediaPipe's depth shear);
3. **head depth**: every horizontal slice is closed by an ellipse as wide as the hull in that
   slice, from just in front of the nose to ``depth_ratio`` face widths behind the nose tip (on
   MediaPipe's canonical face, 15.3 cm wide, the glabella is 2.2 cm behind the nose tip; with a
   head length of 18.5-20 cm from the glabella, the skull ends 1.35-1.45 face widths behind the
   nose tip and hair adds 0.05-0.25; an ellipse is thinner at its tip than a head's rounded back,
   so the default 1.6 sits at the top of that range; measured on the benchmark,
   docs/reconstruct.md); below the chin cut plane, and in front of the chin's depth below the
   chin (where only the neck is, further back), is empty. The lattice's outer faces are empty,
   so the surface closes inside the grid: a head deeper or taller than the grid is cut flat one
   cell before its face (until 2026-12-02 the top of the head, which the silhouettes of a camera
   at face height do not bound, reached the grid's top face and the surface was open there).
   With ``egg`` = k > 0 the back half of a slice is fuller: as wide as an egg ``(1 - t^2)(1 + k
   t)`` (t: -1 front, 1 back) where that is wider than the ellipse (a head is widest behind its
   middle, above the ears); measured on the benchmark, docs/reconstruct.md.

With ``symmetric`` (default) the hull is also carved by the mirror image of every frame's
silhouette: a camera that sees the face from one side then shapes both sides alike (the stage-1
loss keeps the surface symmetric too, ``w_sym``).

The occupancy becomes a signed distance (decimetres, < 0 inside) by a Euclidean distance
transform on the lattice. Everything here comes from the clip itself (masks, landmarks); the
only fixed number is the depth ratio.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import ReconData, symmetric_face

NOSE, CHIN, EAR_L, EAR_R = 1, 152, 234, 454


def visual_hull(points: torch.Tensor, data: ReconData, frames=None, dilate_px: int = 2) -> torch.Tensor:
    """(P,) bool: canonical points not ruled out by any frame's head mask (module doc, step 1)."""
    import torch.nn.functional as F

    frames = data.train_idx if frames is None else frames
    keep = torch.ones(points.shape[0], dtype=torch.bool)
    P = points.double()
    for i in frames.tolist():
        m = data.head[i].permute(2, 0, 1)[None].float()
        if dilate_px > 0:
            m = F.max_pool2d(m, 2 * dilate_px + 1, stride=1, padding=dilate_px)
        m = m[0, 0] > 0.5
        v = data.valid[i][..., 0] > 0.5
        W = data.world_to_cam[i].double()
        K = data.K[i].double()
        pc = P @ W[:3, :3].T + W[:3, 3]
        z = pc[:, 2]
        ok = z > 1e-6
        u = torch.floor(K[0, 0] * pc[:, 0] / z.clamp_min(1e-6) + K[0, 2]).long()
        w = torch.floor(K[1, 1] * pc[:, 1] / z.clamp_min(1e-6) + K[1, 2]).long()
        inimg = ok & (u >= 0) & (u < data.width) & (w >= 0) & (w < data.height)
        uc, wc = u.clamp(0, data.width - 1), w.clamp(0, data.height - 1)
        keep &= ~(inimg & v[wc, uc] & ~m[wc, uc])
    return keep


def _face_depth(points: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """z of the tracked face surface at each point's (x, y): interpolated inside the face's
    footprint, the nearest landmark's outside it (the head curves back from the face's edge)."""
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    L = landmarks[:468].double().numpy()
    xy = points[:, :2].double().numpy()
    z = LinearNDInterpolator(L[:, :2], L[:, 2])(xy)
    out = np.isnan(z)
    z[out] = NearestNDInterpolator(L[:, :2], L[:, 2])(xy[out])
    return torch.from_numpy(z)


def head_occupancy(lattice: torch.Tensor, data: ReconData, depth_ratio: float, front_margin: float = 0.08,
                   face_margin: float = 0.03, chin_depth: float = 0.2, symmetric: bool = True,
                   egg: float = 0.0, face: str = "tracked") -> torch.Tensor:
    """(n,n,n) bool occupancy (index order z, y, x) of the starting shape on a regular lattice
    (``lattice``: (n^3,3) canonical points, vertex id = x + n (y + n z)); module doc.
    ``symmetric``: the lattice is symmetric about the face's plane (x = mean landmark x), and a
    point is carved when its mirror image is (the head is taken to be left-right symmetric); with
    ``face`` = ``symmetric`` the landmarks it is built from (the face's surface, its width, nose
    and chin) are then the tracked face's symmetric part (:func:`.data.symmetric_face`;
    ``tracked``: the neutral frame's landmarks as tracked, whose depth shear, carved from both
    sides, set both cheeks back to the deeper side's depth and widened the face)."""
    n = round(lattice.shape[0] ** (1 / 3))
    L = data.neutral_landmarks.detach().cpu()
    pairs = data.extra.get("face_mirror")
    if symmetric and face == "symmetric" and pairs is not None:
        L = symmetric_face(L, pairs)
    occ = visual_hull(lattice, data)
    zf = _face_depth(lattice, L)
    occ &= ~(lattice[:, 2].double() < zf - face_margin)
    occ &= lattice[:, 1] <= data.y_cut
    occ &= ~((lattice[:, 1] > L[CHIN, 1]) & (lattice[:, 2] < L[CHIN, 2] + chin_depth))
    width = float((L[EAR_L] - L[EAR_R]).norm())
    z_front = float(L[NOSE, 2]) - front_margin
    z_back = float(L[NOSE, 2]) + depth_ratio * width
    zc, b = (z_front + z_back) / 2, (z_back - z_front) / 2
    P = lattice.reshape(n, n, n, 3)  # (z, y, x)
    hull = occ.reshape(n, n, n)
    depth = (P[:, 0, 0, 2] >= z_front) & (P[:, 0, 0, 2] <= z_back)
    out = torch.zeros(n, n, n, dtype=torch.bool)
    for j in range(n):  # horizontal slices (y)
        sl = hull[:, j] & depth[:, None]
        if not bool(sl.any()):
            continue
        xs = P[:, j][sl][:, 0]
        x0, a = float(xs.max() + xs.min()) / 2, float(xs.max() - xs.min()) / 2 + 1e-3
        t = (P[:, j, :, 2] - zc) / b
        q = ((P[:, j, :, 0] - x0) / a) ** 2 / _egg_width(t, egg) + t ** 2
        out[:, j] = hull[:, j] & (q <= 1.0)
    out[[0, -1]] = False  # the lattice's outer faces are empty: the surface closes inside the grid
    out[:, [0, -1]] = False
    out[:, :, [0, -1]] = False
    return out & out.flip(2) if symmetric else out


def _egg_width(t: torch.Tensor, k: float) -> torch.Tensor:
    """Squared half width of a horizontal slice at depth ``t`` (-1 front, 1 back) relative to the
    ellipse's: 1 in front; behind, the larger of the ellipse and an egg ``(1 - t^2)(1 + k t)`` as
    wide as the ellipse at its widest (so ``k`` > 0 widens the back only; 0: the ellipse)."""
    if k <= 0:
        return torch.ones_like(t)
    tw = (math.sqrt(1 + 3 * k * k) - 1) / (3 * k)  # where (1 - t^2)(1 + k t) peaks
    return ((1 + k * t) / ((1 - tw * tw) * (1 + k * tw))).clamp_min(1.0)


def occupancy_to_sdf(occ: torch.Tensor, cell: float) -> torch.Tensor:
    """Signed distance (< 0 inside) of an (n,n,n) occupancy, flattened in lattice vertex order."""
    from scipy.ndimage import distance_transform_edt

    o = occ.numpy()
    if not o.any():
        raise ValueError("empty occupancy")
    inside = distance_transform_edt(o)
    outside = distance_transform_edt(~o)
    sdf = (outside - inside + np.where(o, 0.5, -0.5)) * cell  # zero half way between the lattice points
    return torch.from_numpy(sdf.reshape(-1)).float()
