"""The training views (:class:`ReconData`, one type for reconstruct, edit and evaluate): the
preprocessed clip as tensors, the head region, the split, and per view what an edit needs.

Head region (used for training *and* for PSNR/SSIM)
--------------------------------------------------
The person mask from preprocessing contains neck, shoulders and torso, but the avatar is a head.
We cut it with a plane fixed to the head: in canonical head space (y points down) the plane
``y = y_cut`` lies ``cut_margin`` decimetres below the lowest chin landmark (MediaPipe id 152)
over all frames. For every frame the plane is posed with the head and intersected with the
fronto-parallel plane through the chin, which gives a line in the image; pixels below it
(and pixels that fall outside the source video, i.e. crop padding) are *invalid*, and so are the
pixels of a hand in front of the face (``occluders/`` of preprocessing): what is behind it is unknown.

* ``valid`` (N,H,W,1): pixels that take part in losses and metrics.
* ``head`` (N,H,W,1): person mask AND valid -> the silhouette target.
* ``target`` (N,H,W,3): the frame composited over the constant ``background`` with ``head``.
  Renders are composited over the same background, and outside ``valid`` both are set to
  the background, so images can be compared directly (PSNR/SSIM over the whole frame).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..preprocess.dataset import Views
from ..render.camera import scale_intrinsics

CHIN = 152
FOREHEAD = 10


@dataclass
class ReconData(Views):
    images: torch.Tensor  # (N,H,W,3)
    masks: torch.Tensor  # (N,H,W,1) person mask
    valid: torch.Tensor  # (N,H,W,1)
    head: torch.Tensor  # (N,H,W,1)
    target: torch.Tensor  # (N,H,W,3)
    K: torch.Tensor  # (N,3,3)
    world_to_cam: torch.Tensor  # (N,4,4)
    expression: torch.Tensor  # (N,E)
    landmarks3d: torch.Tensor  # (N,L,3)
    neutral_index: int
    train_idx: torch.Tensor  # (Nt,) long
    test_idx: torch.Tensor  # (Ne,) long
    background: tuple[float, float, float]
    y_cut: float
    width: int
    height: int
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.K.shape[0])

    @property
    def neutral_landmarks(self) -> torch.Tensor:
        return self.landmarks3d[self.neutral_index]

    # --- per view, what an edit needs (styletalker.edit: the loop, its metrics and previews)
    @functools.cached_property
    def landmarks2d(self) -> torch.Tensor:
        """(N,478,2) the frames' 3D landmarks projected with their cameras: pixels of these images."""
        return project_landmarks(self.K, self.world_to_cam, self.landmarks3d)

    @functools.cached_property
    def frame_ids(self) -> list[int]:
        """The preprocessed frame number (row of tracking.npz) of each view."""
        keep = self.extra.get("source_frames")
        return [int(k) for k in torch.as_tensor(keep).tolist()] if keep is not None else list(range(len(self)))

    def frame_id(self, i: int) -> int:
        return self.frame_ids[int(i)]

    def original(self, i: int):
        """The training image of view ``i`` (frame over the background), (H,W,3) float32 numpy."""
        return self.target[i].numpy()

    def face(self, i: int):
        """Landmarks and head mask of view ``i`` for the 2D editors and the edit metrics."""
        from ..edit.regions import FaceInfo

        return FaceInfo(self.landmarks2d[i].numpy(), self.head[i, ..., 0].numpy())

    def composite(self, rgb: torch.Tensor, i: int) -> torch.Tensor:
        """Set pixels outside the valid region of frame i to the background (for metrics)."""
        bg = torch.tensor(self.background, dtype=rgb.dtype, device=rgb.device)
        v = self.valid[i].to(rgb.device)
        return rgb * v + bg * (1 - v)


def symmetry_x(landmarks: torch.Tensor) -> torch.Tensor:
    """The x (canonical space) of the plane a head is taken to be mirror-symmetric about: the mean
    x of one frame's tracked landmarks (L,3), the neutral frame's in reconstruct. Stage 1's grid
    is centred on it (``sphere_init``), and its symmetry terms and the symmetric prior mirror
    across it."""
    return landmarks[:, 0].mean()


def mirror_x(points: torch.Tensor, x_sym) -> torch.Tensor:
    """Points (...,3) mirrored across the plane x = ``x_sym`` (a copy; directions: ``x_sym`` = 0)."""
    q = points.clone()
    q[..., 0] = 2 * x_sym - q[..., 0]
    return q


def symmetric_face(landmarks: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """The mirror-symmetric part (468,3) of the tracked face mesh ``landmarks`` (L,3) about the plane
    x = :func:`symmetry_x`, the plane of the symmetric stage-1 surface (``w_sym``, the symmetric
    hull) and of the symmetric prior: each landmark averaged with its partner's (``mirror``)
    mirror image. The tracked depths are not symmetric: MediaPipe's relative depths shear the
    face (its depth changes in proportion to x: on the demo clip by -1.2..8.9 degrees over the
    frames, 7.6 at the neutral frame, its sides 16 mm apart in depth once mirrored; the Pexels
    clip 9-23) while the face's midline stays straight (its x does not change with depth: a
    shear, not a turn of the head; docs/reconstruct.md, "Novel views" (30)); the symmetric part
    takes the shear out."""
    x_sym = symmetry_x(landmarks)
    lm = landmarks[: mirror.shape[0]]
    return (lm + mirror_x(lm[mirror.to(lm.device)], x_sym)) / 2


def project_landmarks(K: torch.Tensor, world_to_cam: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(N,3,3), (N,4,4), (N,L,3) canonical -> (N,L,2) pixel coordinates."""
    pc = pts @ world_to_cam[:, :3, :3].transpose(1, 2) + world_to_cam[:, None, :3, 3]
    z = pc[..., 2:3].clamp_min(1e-6)
    uv = pc[..., :2] / z
    fx, fy = K[:, None, 0, 0], K[:, None, 1, 1]
    cx, cy = K[:, None, 0, 2], K[:, None, 1, 2]
    return torch.stack([uv[..., 0] * fx + cx, uv[..., 1] * fy + cy], -1)


def split_indices(n: int, neutral: int, every: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out frames: every ``every``-th frame (offset every//2), never the neutral frame."""
    idx = torch.arange(n)
    if every <= 0 or n < 4:
        test = torch.zeros(n, dtype=torch.bool)
    else:
        test = (idx % every) == (every // 2)
        test[neutral] = False
    if test.all() or not test.any() and every > 0 and n >= 4:
        test = torch.zeros(n, dtype=torch.bool)
        test[(neutral + max(1, n // 2)) % n] = True
    return idx[~test], idx[test]


def cut_plane_valid(K, world_to_cam, y_cut: float, width: int, height: int, z_ref: float = 0.0) -> torch.Tensor:
    """(N,H,W,1) pixels above the posed plane y = y_cut (canonical space), see module doc.

    The plane is intersected with the fronto-parallel plane through canonical (0, y_cut, z_ref).
    """
    R = world_to_cam[:, :3, :3]
    t = world_to_cam[:, :3, 3]
    n_cam = R[:, :, 1]  # plane normal (canonical +y, "down") in camera coordinates
    # a point on the plane: canonical (0, y_cut, z_ref) -> camera
    p0 = R[:, :, 1] * y_cut + R[:, :, 2] * z_ref + t
    zc = p0[:, 2]
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    X = (xs[None] - cx[:, None, None]) / fx[:, None, None] * zc[:, None, None]
    Y = (ys[None] - cy[:, None, None]) / fy[:, None, None] * zc[:, None, None]
    Z = zc[:, None, None].expand_as(X)
    P = torch.stack([X, Y, Z], -1)  # (N,H,W,3)
    s = ((P - p0[:, None, None, :]) * n_cam[:, None, None, :]).sum(-1)
    return (s < 0).float().unsqueeze(-1)


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """(N,H,W,1) masks grown by ``px`` pixels (max over a (2 px + 1)^2 square)."""
    m = mask.permute(0, 3, 1, 2).float()
    return F.max_pool2d(m, 2 * px + 1, stride=1, padding=px).permute(0, 2, 3, 1).contiguous()


def erode(mask: torch.Tensor, px: int) -> torch.Tensor:
    """(N,H,W,1) masks shrunk by ``px`` pixels (min over a (2 px + 1)^2 square)."""
    return -dilate(-mask.float(), px)


def edge_band(mask: torch.Tensor, px: int) -> torch.Tensor:
    """(N,H,W,1) pixels within ``px`` pixels of the outline of the {0,1} masks (N,H,W,1)."""
    if px <= 0:
        return torch.zeros_like(mask)
    return dilate(mask, px) - erode(mask, px)


# backdrop unmixing (colour_targets): neighbourhood radius at 256 px, and the backdrop share above
# which a head pixel's colour is left out instead of corrected
UNMIX_RADIUS_PX = 6
UNMIX_MAX_SHARE = 0.5
# RGB distance between the backdrop and the person below which the two cannot be told apart:
# nothing is unmixed there, and crossview.BackdropCheck does not measure. 0.15 unmixed a beige wall
# from skin too and cost an unseen clip (cap12) 0.7 dB held out; 0.3 keeps the blue backdrop's
# gain (docs/reconstruct.md, "Clean edges")
BACKDROP_MIN_CONTRAST = 0.3


def backdrop_share(images: torch.Tensor, person: torch.Tensor, head: torch.Tensor, radius: int) -> tuple:
    """How much of the backdrop's colour each head pixel holds, and that colour.

    A pixel ``c`` of the head's outline is taken as a mix ``(1 - t) f + t b`` of the person's
    colour ``f`` (the mean of the head pixels at least 2 px inside the head mask within
    ``radius``) and the backdrop's ``b`` (the mean of the pixels at least 2 px off the person mask
    within ``radius``): ``t`` is the projection of ``c - f`` on ``b - f``, in [0, 1]. It is 0
    where either has no pixel within ``radius`` or they differ by less than
    :data:`BACKDROP_MIN_CONTRAST` (a backdrop the person's colours cannot be told from). Returns
    ``(t (N,H,W,1), b (N,H,W,3))``."""
    x = images.permute(0, 3, 1, 2)
    h = head.permute(0, 3, 1, 2)
    k, r = 2 * radius + 1, radius

    def mean_over(w):
        w = w.permute(0, 3, 1, 2)
        return F.avg_pool2d(x * w, k, 1, r), F.avg_pool2d(w, k, 1, r)

    (fs, fw), (bs, bw) = mean_over(erode(head, 2)), mean_over(erode(1 - person, 2))
    f, b = fs / fw.clamp_min(1e-6), bs / bw.clamp_min(1e-6)
    d = b - f
    dd = (d * d).sum(1, keepdim=True)
    t = (((x - f) * d).sum(1, keepdim=True) / dd.clamp_min(1e-6)).clamp(0, 1)
    ok = (fw > 1e-3) & (bw > 1e-3) & (dd > BACKDROP_MIN_CONTRAST**2) & (h > 0.5)
    return torch.where(ok, t, torch.zeros_like(t)).permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)


def colour_targets(data: "ReconData", edge_px: int, unmix: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The video frames' colours the avatar is fitted to and where they are trusted: the one rule
    for the Gaussians' colour loss and the prior's texture lookup. Returns ``(images (N,H,W,3),
    trusted (N,H,W,1))``: ``trusted`` is 0 within ``edge_px`` of the head mask's outline (it mixes
    hair and ears with the backdrop) and, with ``unmix``, where a pixel holds more than
    :data:`UNMIX_MAX_SHARE` of the backdrop's colour (:func:`backdrop_share`); the other outline
    pixels get that share taken out, ``(c - t b) / (1 - t)``. Cached in ``data.extra``."""
    key = ("colour_targets", int(edge_px), bool(unmix))
    if key in data.extra:
        return data.extra[key]
    images = data.images
    trusted = 1 - edge_band(data.head, int(edge_px))
    if unmix:
        radius = max(2, round(UNMIX_RADIUS_PX * data.width / 256))
        t, b = backdrop_share(data.images, data.masks, data.head, radius)
        keep = t < UNMIX_MAX_SHARE
        images = torch.where(keep, (images - t * b) / (1 - t).clamp_min(1e-3), images).clamp(0, 1)
        trusted = trusted * keep.to(trusted.dtype)
    data.extra[key] = (images, trusted)
    return images, trusted


def mouth_masks(data: "ReconData", grow_px: int = 2) -> torch.Tensor:
    """(N,H,W,1) the mouth of every frame: the outer lip line of the tracked landmarks, filled
    (lips, teeth and the opening between them), grown by ``grow_px`` pixels."""
    from ..edit.regions import LIPS_OUTER, fill_polygon

    pts = data.landmarks2d.cpu().numpy()
    m = torch.stack([torch.from_numpy(fill_polygon((data.height, data.width), p[LIPS_OUTER])) for p in pts])
    m = m[..., None]
    if grow_px > 0:
        k = 2 * grow_px + 1
        m = F.max_pool2d(m.permute(0, 3, 1, 2), k, stride=1, padding=grow_px).permute(0, 2, 3, 1)
    return m.contiguous().to(data.valid.device)


def _inframe(crop_box, src_w, src_h, size_w, size_h) -> torch.Tensor:
    out = []
    for b in crop_box.tolist():
        x0, y0, x1, y1 = b
        sx = (x1 - x0) / size_w
        sy = (y1 - y0) / size_h
        cxs = x0 + (torch.arange(size_w) + 0.5) * sx
        cys = y0 + (torch.arange(size_h) + 0.5) * sy
        vx = (cxs >= 0) & (cxs < src_w)
        vy = (cys >= 0) & (cys < src_h)
        out.append((vy[:, None] & vx[None, :]).float())
    return torch.stack(out).unsqueeze(-1)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # (N,H,W,C) -> (N,h,w,C), area filter
    y = F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="area")
    return y.permute(0, 2, 3, 1).contiguous()


DATA_KEYS = ("size", "holdout_every", "cut_margin", "background", "max_frames")  # what from_dataset takes


def view_framing(K: torch.Tensor, width: int, height: int, size: int | None = None) -> tuple[torch.Tensor, int, int]:
    """Intrinsics (3,3) or (N,3,3) and image size of the training views made from preprocessed
    images of ``width`` x ``height`` with intrinsics ``K`` and the data option ``size``; what
    :func:`from_dataset` trains on and what :func:`styletalker.animate.load_scene` frames with."""
    if size and (size != width or size != height):
        return scale_intrinsics(K, size / width, size / height), int(size), int(size)
    return torch.as_tensor(K).clone().float(), int(width), int(height)


def from_options(ds, options: dict) -> ReconData:
    """:func:`from_dataset` with the data options a reconstruction recorded (``DataOptions`` as a
    dict, ``avatar.extra["data"]``); keys other than :data:`DATA_KEYS` are ignored, missing ones
    take from_dataset's defaults."""
    kw = {k: options[k] for k in DATA_KEYS if options.get(k) is not None}
    if "background" in kw:
        kw["background"] = tuple(float(x) for x in kw["background"])
    return from_dataset(ds, **kw)


def from_dataset(ds, *, size: int | None = None, holdout_every: int = 10, cut_margin: float = 0.05,
                 background=(1.0, 1.0, 1.0), max_frames: int | None = None) -> ReconData:
    """Build :class:`ReconData` from ``styletalker.preprocess.load_dataset(work)``.

    ``size`` resamples the images (area filter) and scales the intrinsics; ``max_frames`` keeps an
    evenly spaced subset (always including the neutral frame).
    """
    from ..safeload import MAX_IMAGE_SIDE

    n = len(ds)
    if n < 2:
        raise InputError(f"{getattr(ds, 'root', 'dataset')}: need at least 2 frames to reconstruct, found {n}")
    if size is not None and not 0 < int(size) <= MAX_IMAGE_SIDE:
        raise InputError(f"data size {size}: not an image size in 1..{MAX_IMAGE_SIDE} pixels")
    keep = torch.arange(n)
    neutral = int(ds.neutral_frame)
    if max_frames and n > max_frames:
        keep = torch.linspace(0, n - 1, max_frames).round().long().unique()
        if neutral not in keep.tolist():
            keep[torch.argmin((keep - neutral).abs())] = neutral
        keep = keep.unique()
    neutral_index = int((keep == neutral).nonzero()[0, 0])
    images = ds.images[keep].float()
    masks = ds.masks[keep].float()
    occluders = ds.occluders[keep].float()
    K = ds.K[keep].clone().float()
    w2c = ds.world_to_cam[keep].float()
    expr = ds.expression[keep].float()
    lmk = ds.landmarks3d[keep].float()
    H, W = int(images.shape[1]), int(images.shape[2])
    src = (getattr(ds, "manifest", {}) or {}).get("source", {})
    if "width" in src and "height" in src and hasattr(ds, "crop_box"):
        inframe = _inframe(ds.crop_box[keep], src["width"], src["height"], W, H)
    else:
        inframe = torch.ones(len(keep), H, W, 1)
    if size and (size != W or size != H):
        images = _resize(images, (size, size))
        masks = (_resize(masks, (size, size)) > 0.5).float()
        occluders = (_resize(occluders, (size, size)) > 0.0).float()
        inframe = (_resize(inframe, (size, size)) > 0.999).float()
    K, W, H = view_framing(K, W, H, size)
    y_cut = float(lmk[:, CHIN, 1].max()) + cut_margin
    z_chin = float(lmk[:, CHIN, 2].median())
    valid = cut_plane_valid(K, w2c, y_cut, W, H, z_chin) * inframe * (1 - occluders)  # hands: unknown
    head = masks * valid
    bg = torch.tensor(background, dtype=torch.float32)
    target = images * head + bg * (1 - head)
    train_idx, test_idx = split_indices(len(keep), neutral_index, holdout_every)
    return ReconData(images, masks, valid, head, target, K, w2c, expr, lmk, neutral_index, train_idx, test_idx,
                     tuple(float(b) for b in background), y_cut, W, H,
                     extra={"source_frames": keep, **face_mesh_topology(ds)})


def face_mesh_topology(ds) -> dict:
    """MediaPipe's face mesh as the clip's dataset holds it: ``face_faces`` (F,3) triangles over the
    468 landmarks and ``face_mirror`` (468,) each landmark's mirror-image partner (from the
    canonical face, which is symmetric in x); empty for a dataset without its canonical mesh."""
    mesh = getattr(ds, "canonical_mesh", None)
    if mesh is None:
        return {}
    v = torch.as_tensor(mesh.vertices).float()
    flipped = v * torch.tensor([-1.0, 1.0, 1.0])
    return {"face_faces": torch.as_tensor(mesh.faces).long(), "face_mirror": torch.cdist(flipped, v).argmin(1)}
