"""Multi-view prior from one neutral frame (paper Sec. 3.2, "diffusion-guided color pre-training").

The paper feeds a neutral frame to V3D (a multi-view video diffusion model fine-tuned from Stable
Video Diffusion) and uses 6 generated views spanning about 120 degrees in front of the head as
extra training images for the Gaussian stage. Backends (``get_prior(name)``):

* ``symmetric`` (built in, offline, no weights): the neutral frame is projected onto the stage-1
  mesh (posed with the neutral expression; visibility by a depth test, grazing vertices dropped),
  vertices the camera does not see take the colour of their mirror image across the face's
  symmetry plane (x = landmark centre in canonical space), what is still unknown (back of the
  head) is filled by harmonic interpolation over the mesh, and the coloured mesh is rendered from
  the prior cameras.
* ``svd``: a Stable-Video-Diffusion-style image-to-video pipeline (V3D) loaded with
  ``diffusers.StableVideoDiffusionPipeline.from_pretrained`` by Hugging Face id or local folder
  (:mod:`styletalker.hub`), float16 on CUDA and float32 on the CPU. The neutral frame (head on a
  white background) is the conditioning image, framed as image-to-3D models are trained (the
  square about the prior cameras' orbit centre in which the head spans 80 %, :func:`view_window`);
  the generated frames are taken as an orbit of ``orbit_degrees`` starting at the input view
  (V3D's convention), put back into the cameras' framing, and the frame nearest to each prior
  camera's yaw is used. Masks: pixels that differ from the white background.
* ``none``: no prior views (ablation "w/o V3D").

Cameras: ``orbit_cameras`` rotates the neutral frame's head pose about the head's vertical axis
(canonical y through the head centre) by ``n`` yaw angles evenly spread over ``span_deg``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, MissingModelError
from .data import mirror_x
from .raster import rasterize


@dataclass
class PriorCameras:
    K: torch.Tensor  # (V,3,3)
    world_to_cam: torch.Tensor  # (V,4,4)
    yaw_deg: list[float]
    width: int
    height: int
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the point the cameras orbit (canonical space)

    def center_px(self) -> tuple[float, float]:
        """Where :attr:`center` projects: the same pixel in every view of an orbit."""
        from .raster import project_points

        xy, _ = project_points(torch.tensor([self.center], dtype=torch.float32), self.K[0], self.world_to_cam[0])
        return float(xy[0, 0]), float(xy[0, 1])

    def __len__(self) -> int:
        return int(self.K.shape[0])


@dataclass
class PriorMesh:
    """The geometry the prior is built on: canonical verts posed with the neutral expression."""

    verts: torch.Tensor  # (V,3)
    faces: torch.Tensor  # (F,3)
    colors: torch.Tensor | None = None  # (V,3) fallback colours (e.g. stage-1 MLP_color)


@dataclass
class PriorViews:
    images: torch.Tensor  # (V,H,W,3) float [0,1], head composited on the background
    masks: torch.Tensor  # (V,H,W,1) {0,1}
    K: torch.Tensor
    world_to_cam: torch.Tensor
    expression: torch.Tensor  # (E,) expression the views show (the neutral frame's)
    yaw_deg: list[float]
    backend: str
    weights: torch.Tensor | None = None  # (V,H,W,1) in [0,1]: confidence of each pixel's colour

    def __len__(self) -> int:
        return int(self.images.shape[0])


def yaw_matrix(deg: float, center) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    R = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    ctr = torch.as_tensor(center, dtype=torch.float32).reshape(3)
    M = torch.eye(4)
    M[:3, :3] = R
    M[:3, 3] = ctr - R @ ctr
    return M


def orbit_cameras(K: torch.Tensor, world_to_cam: torch.Tensor, center, width: int, height: int,
                  n: int = 6, span_deg: float = 120.0) -> PriorCameras:
    yaws = [(-span_deg / 2 + span_deg * k / (n - 1)) if n > 1 else 0.0 for k in range(n)]
    w2c = torch.stack([world_to_cam.float() @ yaw_matrix(y, center) for y in yaws])
    ctr = tuple(float(c) for c in torch.as_tensor(center, dtype=torch.float32).reshape(3))
    return PriorCameras(K.float().expand(n, 3, 3).clone(), w2c, yaws, width, height, ctr)


class MultiViewPrior:
    """Interface: ``generate(dataset, mesh, neutral_index, cameras) -> PriorViews``."""

    name = "base"

    def generate(self, dataset, mesh: PriorMesh | None, neutral_index: int, cameras: PriorCameras) -> PriorViews:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    v = verts
    fn = torch.linalg.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = torch.zeros_like(v)
    for k in range(3):
        n.index_add_(0, faces[:, k], fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def harmonic_fill(values: torch.Tensor, known: torch.Tensor, faces: torch.Tensor, iters: int = 300,
                  verts: torch.Tensor | None = None) -> torch.Tensor:
    """Fill unknown per-vertex values by repeated neighbour averaging (Jacobi) over mesh edges,
    starting from the nearest known vertex's value (``verts`` given) or the known mean."""
    V = values.shape[0]
    if bool(known.all()) or not bool(known.any()):
        return values
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = torch.cat([e, e.flip(1)])
    A = torch.sparse_coo_tensor(e.T, torch.ones(e.shape[0]), (V, V), check_invariants=False).coalesce()
    deg = torch.sparse.sum(A, 1).to_dense().clamp_min(1)[:, None]
    x = values.clone()
    # start each unknown vertex at the value of the nearest known one (so the back of the head
    # starts from the hair around it, not from an average dominated by the face), then smooth
    from scipy.spatial import cKDTree

    if verts is not None:
        _, nn = cKDTree(verts[known].double().numpy()).query(verts[~known].double().numpy())
        x[~known] = values[known][torch.from_numpy(nn).long()]
    else:
        x[~known] = values[known].mean(0)
    for _ in range(iters):
        avg = torch.sparse.mm(A, x) / deg
        x = torch.where(known[:, None], values, avg)
    return x


class SymmetricPrior(MultiViewPrior):
    """Projective texturing of the neutral frame onto the mesh, mirrored for the unseen side.

    For every pixel of a prior view the visible surface point is found by rasterizing the mesh
    (positions interpolated per pixel). If the neutral camera sees that point (depth test,
    facing the camera, inside the head mask) its colour is sampled from the neutral frame;
    otherwise the point mirrored across the symmetry plane is tried; otherwise the colour comes
    from per-vertex colours (the same test per vertex, then harmonic fill over the mesh).
    """

    name = "symmetric"
    TURN_FROM, TURN_AT = 15.0, 60.0  # degrees of a view's yaw over which ``turned_front`` takes over

    def __init__(self, min_facing: float = 0.2, depth_tol: float = 0.05, soft: bool = False,
                 confidence: tuple[float, float, float, float] | None = None, frontal_facing: float = 0.5,
                 edge_px: int = 0, unmix: bool = False, turned_front: float | None = None):
        """``confidence``: per-pixel weights (seen frontally, seen at a grazing angle, mirrored,
        filled) written with the views; a pixel is *seen frontally* when the neutral camera looks
        at its surface point with facing (cosine) above ``frontal_facing``: the video frames
        supervise it, the prior view need not. ``None``: no weights (every pixel counts fully).
        ``edge_px``, ``unmix``: which of the neutral frame's pixels lend their colour, and with the
        backdrop's share taken out (:func:`.data.colour_targets`, the Gaussians' rule too).
        ``turned_front``: the weight of the frontally seen pixels in views turned by
        :attr:`TURN_AT` degrees or more, reached linearly from the first ``confidence`` weight at
        :attr:`TURN_FROM` (the video frames show those points only from the front; None: no rise)."""
        self.min_facing = min_facing
        self.depth_tol = depth_tol
        self.soft = soft
        self.confidence = confidence
        self.frontal_facing = frontal_facing
        self.edge_px = int(edge_px)
        self.unmix = bool(unmix)
        self.turned_front = turned_front

    def _lookup(self, pts, normals, ctx, facing_out: list | None = None):
        """Colour (P,3) and a 'seen' flag (P,) for 3D points as observed in the neutral frame
        (``facing_out`` receives the cosine between normal and view direction)."""
        K, w2c, W, H, depth, img = ctx["K"], ctx["w2c"], ctx["W"], ctx["H"], ctx["depth"], ctx["img"]
        from .raster import project_points

        xy, z = project_points(pts, K, w2c)
        u = torch.floor(xy[:, 0]).long()
        v = torch.floor(xy[:, 1]).long()
        inimg = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0)
        uc, vc = u.clamp(0, W - 1), v.clamp(0, H - 1)
        zb = depth[vc, uc]
        vis = inimg & (zb > 0) & (z <= zb + self.depth_tol)
        if normals is not None:
            view = ctx["cam_c"] - pts
            view = view / view.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            facing = (normals * view).sum(-1)
            vis &= facing > self.min_facing
            if facing_out is not None:
                facing_out.append(facing)
        grid = torch.stack([xy[:, 0] / W * 2 - 1, xy[:, 1] / H * 2 - 1], -1).reshape(1, 1, -1, 2)
        samp = torch.nn.functional.grid_sample(img.permute(2, 0, 1)[None], grid, mode="bilinear",
                                               align_corners=False, padding_mode="border")[0, :, 0].T
        vis &= samp[:, 3] > 0.99  # inside the head mask
        return samp[:, :3], vis

    def _context(self, dataset, mesh, i):
        K, w2c = dataset.K[i].float().cpu(), dataset.world_to_cam[i].float().cpu()
        W, H = dataset.width, dataset.height
        verts, faces = mesh.verts.detach().float().cpu(), mesh.faces.cpu()
        r = rasterize(verts, faces, None, K, w2c, W, H, soft=False)
        from .data import colour_targets, symmetry_x

        images, trusted = colour_targets(dataset, self.edge_px, self.unmix)
        head = dataset.head[i].float().cpu() * trusted[i].float().cpu()
        img = torch.cat([images[i].float().cpu(), head], -1)
        return {"K": K, "w2c": w2c, "W": W, "H": H, "depth": r.depth[..., 0], "img": img,
                "cam_c": -w2c[:3, :3].T @ w2c[:3, 3], "x_sym": float(symmetry_x(dataset.landmarks3d[i]))}

    def vertex_colors(self, dataset, mesh: PriorMesh, neutral_index: int, ctx=None):
        """Per-vertex colours: seen, else mirrored, else filled. Returns (colors, seen, mirrored)."""
        i = int(neutral_index)
        ctx = ctx or self._context(dataset, mesh, i)
        verts, faces = mesh.verts.detach().float().cpu(), mesh.faces.cpu()
        n = vertex_normals(verts, faces)
        col, seen = self._lookup(verts, n, ctx)
        colm, seen_m = self._lookup(mirror_x(verts, ctx["x_sym"]), mirror_x(n, 0.0), ctx)
        mirrored = ~seen & seen_m
        colors = torch.where(seen[:, None], col, colm)
        known = seen | mirrored
        if bool(known.any()):
            colors = harmonic_fill(colors, known, faces, verts=verts)
        elif mesh.colors is not None:
            colors = mesh.colors.detach().float().cpu()
        return colors, seen, mirrored

    def generate(self, dataset, mesh, neutral_index, cameras):
        if mesh is None:
            raise InputError("the symmetric prior needs a mesh (stage 1 or a proxy sphere)")
        i = int(neutral_index)
        ctx = self._context(dataset, mesh, i)
        vcol, vseen, vmirr = self.vertex_colors(dataset, mesh, i, ctx)
        verts, faces = mesh.verts.detach().float().cpu(), mesh.faces.cpu()
        normals = vertex_normals(verts, faces)
        attrs = torch.cat([vcol, verts, normals], -1)
        imgs, masks, weights = [], [], []
        bg = torch.tensor(dataset.background, dtype=torch.float32)
        n_seen = n_mirr = n_cov = 0
        for k in range(len(cameras)):
            r = rasterize(verts, faces, attrs, cameras.K[k], cameras.world_to_cam[k], cameras.width, cameras.height,
                          soft=self.soft)
            m = (r.alpha > 0.5)[..., 0]
            a = r.image[m] / r.alpha[m].clamp_min(1e-6)  # un-premultiply (no background given)
            fill, pts, nrm = a[:, :3], a[:, 3:6], a[:, 6:9]
            nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            facing: list = []
            c1, s1 = self._lookup(pts, nrm, ctx, facing)
            c2, s2 = self._lookup(mirror_x(pts, ctx["x_sym"]), mirror_x(nrm, 0.0), ctx)
            col = torch.where(s1[:, None], c1, torch.where(s2[:, None], c2, fill))
            img = bg.expand(cameras.height, cameras.width, 3).clone()
            img[m] = col.clamp(0, 1)
            imgs.append(img)
            masks.append(m.float()[..., None])
            if self.confidence is not None:
                w_front, w_graze, w_mirr, w_fill = self.confidence
                if self.turned_front is not None:
                    turn = (abs(float(cameras.yaw_deg[k])) - self.TURN_FROM) / (self.TURN_AT - self.TURN_FROM)
                    t = min(max(turn, 0.0), 1.0)
                    w_front = w_front + t * (self.turned_front - w_front)
                front = s1 & (facing[0] > self.frontal_facing)
                w = torch.where(front, w_front, torch.where(s1, w_graze, torch.where(s2, w_mirr, w_fill)))
                wi = torch.zeros(cameras.height, cameras.width)
                wi[m] = w.float()
                weights.append(wi[..., None])
            n_seen += int(s1.sum())
            n_mirr += int((~s1 & s2).sum())
            n_cov += int(m.sum())
        self.stats = {"seen_vertices": int(vseen.sum()), "mirrored_vertices": int(vmirr.sum()),
                      "filled_vertices": int((~(vseen | vmirr)).sum()),
                      "pixels_seen": n_seen / max(n_cov, 1), "pixels_mirrored": n_mirr / max(n_cov, 1)}
        return PriorViews(torch.stack(imgs), torch.stack(masks), cameras.K.clone(), cameras.world_to_cam.clone(),
                          dataset.expression[i].clone(), list(cameras.yaw_deg), self.name,
                          torch.stack(weights) if weights else None)


# ---------------------------------------------------------------------------------------------
def check_svd_path(path) -> Path:
    """Early check of the svd prior model, a Hugging Face id or a local folder (resolved, and
    downloaded when online and not cached, by :func:`styletalker.hub.resolve_model`); returns its
    local folder. MissingModelError when unusable."""
    from ..hub import SVD, resolve_model

    if path is None or str(path) == "":
        raise MissingModelError("the svd prior needs --prior-model ID|PATH: a Hugging Face id or a local folder "
                                "of a diffusers StableVideoDiffusionPipeline (e.g. V3D weights), or use --prior symmetric")
    return resolve_model(path, SVD)


def load_svd_pipeline(path, device="cpu", dtype=None):
    """``StableVideoDiffusionPipeline`` by id or folder on ``device`` (``auto``/``cpu``/``cuda``), weights
    in ``dtype`` (default float16 on CUDA, float32 on the CPU); MissingModelError when unusable."""
    from ..device import check_placement, model_dtype, resolve_device

    p = check_svd_path(path)
    device = resolve_device(device)
    dtype = dtype or model_dtype(device)
    try:
        from diffusers import StableVideoDiffusionPipeline
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingModelError(f"the svd prior needs diffusers (pip install 'styletalker[diffusion]'): {e}") from None
    try:
        pipe = StableVideoDiffusionPipeline.from_pretrained(str(p), local_files_only=True, dtype=dtype,
                                                            use_safetensors=True)  # no pickled weights
    except Exception as e:
        raise MissingModelError(f"{path}: could not load a StableVideoDiffusionPipeline from {p} "
                                f"({type(e).__name__}: {e})") from None
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    check_placement(device, dtype, pipe.unet, pipe.vae, pipe.image_encoder)
    return pipe


FRAME_BORDER = 0.2  # image-to-3D models' inputs: the object centred, its longer side 80 % of the frame


def view_window(head: torch.Tensor, center_px: tuple[float, float], border: float = FRAME_BORDER):
    """The square ``(cx, cy, side)`` in pixel coordinates (pixel k spans [k, k+1)) centred on
    ``center_px`` in which the head mask (H,W) spans ``1 - border`` of the side, the framing that
    image-to-3D diffusion models (V3D, SV3D, Zero123) are trained on: the object at the centre of
    the frame, about which their views orbit, and the orbit of :func:`orbit_cameras` turns about
    the point that projects to ``center_px`` in every view."""
    cx, cy = (float(c) for c in center_px)
    ys, xs = torch.nonzero(head > 0.5, as_tuple=True)
    if len(xs) == 0:
        half = max(head.shape) / 2
    else:
        xe = torch.cat([xs, xs + 1]).float()
        ye = torch.cat([ys, ys + 1]).float()
        half = float(max((xe - cx).abs().max(), (ye - cy).abs().max()))
    return cx, cy, 2 * half / (1 - border)


def _sample(img: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images (F,H,W,C) at normalised coordinates (h,w) (grid_sample's,
    align_corners=False); outside the images: ``fill`` (C,)."""
    grid = torch.stack([gx, gy], -1)[None].expand(img.shape[0], -1, -1, -1)
    x = torch.cat([img, torch.ones_like(img[..., :1])], -1).permute(0, 3, 1, 2)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False).permute(0, 2, 3, 1)
    cover = out[..., -1:]
    return out[..., :-1] + (1 - cover) * fill


def crop_to_window(img: torch.Tensor, window, size: tuple[int, int], fill) -> torch.Tensor:
    """The square ``window`` (:func:`view_window`) of images (F,H,W,C) resampled to ``size`` (h,w)."""
    cx, cy, side = window
    H, W = img.shape[1:3]
    h, w = size
    u = (torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5
    v = (torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5
    gy, gx = torch.meshgrid(2 * (cy + v * side) / H - 1, 2 * (cx + u * side) / W - 1, indexing="ij")
    return _sample(img.float(), gx, gy, torch.as_tensor(fill, dtype=torch.float32))


def uncrop_from_window(frames: torch.Tensor, window, height: int, width: int, fill) -> torch.Tensor:
    """Images (F,h,w,C) of the square ``window`` put back where it lies in a (height, width) image,
    ``fill`` outside it: the inverse of :func:`crop_to_window`."""
    cx, cy, side = window
    x = torch.arange(width, dtype=torch.float32) + 0.5
    y = torch.arange(height, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(2 * (y - cy) / side, 2 * (x - cx) / side, indexing="ij")
    return _sample(frames.float(), gx, gy, torch.as_tensor(fill, dtype=torch.float32))


class SVDPrior(MultiViewPrior):
    name = "svd"

    def __init__(self, model_path, device="cpu", num_inference_steps: int = 25, orbit_degrees: float = 360.0,
                 num_frames: int | None = None, seed: int = 0, mask_threshold: float = 0.08, dtype=None):
        self.model_path = model_path
        self.steps = int(num_inference_steps)
        self.orbit = float(orbit_degrees)
        self.num_frames = num_frames
        self.seed = int(seed)
        self.mask_threshold = mask_threshold
        self.pipe = load_svd_pipeline(model_path, device, dtype)  # fail early with a clear message
        self.device = str(self.pipe.device)

    @staticmethod
    def window(dataset, i: int, cameras: PriorCameras):
        """The square of the neutral frame ``i`` the pipeline is conditioned on and generates
        (:func:`view_window`): centred where the cameras' orbit centre projects."""
        return view_window(dataset.head[int(i)][..., 0].float().cpu(), cameras.center_px())

    def _size(self) -> tuple[int, int]:
        pipe = self.pipe
        s = pipe.unet.config.sample_size
        s = s if isinstance(s, int) else s[0]
        px = int(s * pipe.vae_scale_factor)
        return px, px

    def generate(self, dataset, mesh, neutral_index, cameras):
        from PIL import Image

        i = int(neutral_index)
        white = torch.ones(3)
        head = dataset.head[i].float()
        cond = dataset.images[i].float() * head + white * (1 - head)
        h, w = self._size()
        window = self.window(dataset, i, cameras)
        cond = crop_to_window(cond[None], window, (h, w), white)[0]
        pil = Image.fromarray((cond.clamp(0, 1).numpy() * 255).round().astype(np.uint8))
        nf = int(self.num_frames or self.pipe.unet.config.num_frames)
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        out = self.pipe(image=pil, height=h, width=w, num_frames=nf, num_inference_steps=self.steps,
                        decode_chunk_size=nf, generator=g, output_type="np", motion_bucket_id=127,
                        noise_aug_strength=0.02, min_guidance_scale=1.0, max_guidance_scale=2.5)
        frames = np.asarray(out.frames[0], dtype=np.float32)  # (F,h,w,3)
        frames = uncrop_from_window(torch.from_numpy(frames).clamp(0, 1), window, cameras.height, cameras.width, white)
        frame_yaw = [(k * self.orbit / nf) for k in range(nf)]
        imgs, masks, picked = [], [], []
        bg = torch.tensor(dataset.background, dtype=torch.float32)
        for yaw in cameras.yaw_deg:
            d = [abs(((fy - yaw) + 180) % 360 - 180) for fy in frame_yaw]
            k = int(np.argmin(d))
            picked.append(k)
            f = frames[k]
            m = ((f - white).abs().max(-1, keepdim=True).values > self.mask_threshold).float()
            imgs.append(f * m + bg * (1 - m))
            masks.append(m)
        self.stats = {"frames": nf, "picked_frames": picked, "frame_yaw_deg": [frame_yaw[k] for k in picked],
                      "window_px": [round(float(c), 2) for c in window]}
        return PriorViews(torch.stack(imgs), torch.stack(masks), cameras.K.clone(), cameras.world_to_cam.clone(),
                          dataset.expression[i].clone(), list(cameras.yaw_deg), self.name)


class NoPrior(MultiViewPrior):
    name = "none"

    def generate(self, dataset, mesh, neutral_index, cameras):
        H, W = cameras.height, cameras.width
        return PriorViews(torch.zeros(0, H, W, 3), torch.zeros(0, H, W, 1), torch.zeros(0, 3, 3), torch.zeros(0, 4, 4),
                          dataset.expression[int(neutral_index)].clone(), [], self.name)


from .presets import PRIORS  # noqa: E402,F401  (re-exported)


def get_prior(name: str, model_path: str | os.PathLike | None = None, device="cpu", **kw) -> MultiViewPrior:
    if name == "symmetric":
        return SymmetricPrior(**kw)
    if name == "svd":
        return SVDPrior(model_path, device=device, **kw)
    if name == "none":
        return NoPrior()
    raise InputError(f"unknown prior backend {name!r}; choose from {', '.join(PRIORS)}")


# ---------------------------------------------------------------------------------------------
def save_views(folder: Path, views: PriorViews, **info) -> None:
    from ..workdir import save_npz, write_image

    folder = Path(folder)
    for sub in ("views", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k in range(len(views)):
        for sub, arr in (("views", views.images[k]), ("masks", views.masks[k].expand(-1, -1, 1)[..., 0])):
            write_image(folder / sub / f"{k:03d}.png", arr)
        if views.weights is not None:
            write_image(folder / "weights" / f"{k:03d}.png", views.weights[k][..., 0])
    save_npz(folder / "cameras.npz", K=views.K.numpy(), world_to_cam=views.world_to_cam.numpy(),
             yaw_deg=np.array(views.yaw_deg), expression=views.expression.numpy())


def load_views(folder: Path, backend: str = "") -> PriorViews:
    from ..safeload import load_npz, read_image, reading

    folder = Path(folder)
    z = load_npz(folder / "cameras.npz", "prior cameras file")
    hint = "run `styletalker reconstruct` again with --force"

    def img(path, gray=False):
        return torch.from_numpy(read_image(path, "prior view", hint, gray=gray)).float()

    with reading(folder, "multi-view prior folder", hint):
        n = z["K"].shape[0]
        imgs, masks, weights = [], [], []
        for k in range(n):
            imgs.append(img(folder / "views" / f"{k:03d}.png") / 255)
            masks.append((img(folder / "masks" / f"{k:03d}.png", gray=True) > 127).float()[..., None])
            w = folder / "weights" / f"{k:03d}.png"
            if w.is_file():
                weights.append(img(w, gray=True)[..., None] / 255)
        if n == 0:
            imgs = masks = None
        return PriorViews(torch.stack(imgs) if imgs else torch.zeros(0, 1, 1, 3), torch.stack(masks) if masks else torch.zeros(0, 1, 1, 1),
                          torch.from_numpy(z["K"]).float(), torch.from_numpy(z["world_to_cam"]).float(),
                          torch.from_numpy(z["expression"]).float(), [float(y) for y in z["yaw_deg"]], backend,
                          torch.stack(weights) if weights and len(weights) == n else None)
