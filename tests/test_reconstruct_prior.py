"""Multi-view prior backends: the built-in symmetric one and the diffusion (svd) one with a tiny
randomly initialised Stable Video Diffusion pipeline (no weights are downloaded)."""

import math

import numpy as np
import pytest
import torch

from styletalker.reconstruct.data import ReconData
from styletalker.reconstruct.prior import PriorMesh, SymmetricPrior, get_prior, load_views, orbit_cameras, save_views
from styletalker.reconstruct.raster import rasterize
from styletalker.reconstruct.tetgrid import build_tet_grid, marching_tets
from styletalker.render import Camera, look_at
from tiny_models import TINY_SVD_ID, make_tiny_svd


def _textured_head(size=48, yaw_deg=0.0):
    """A sphere 'head' whose left half (x<0) is red and right half green, seen from the front
    (rotated by yaw_deg): a one-frame ReconData plus the mesh."""
    g = build_tet_grid(24, 1.4)
    m = marching_tets(g.verts, g.verts.norm(dim=1) - 1.0, g.tets)
    cols = torch.where(m.verts[:, :1] < 0, torch.tensor([1.0, 0.1, 0.1]), torch.tensor([0.1, 0.9, 0.1]))
    a = math.radians(yaw_deg)
    cam = Camera.from_fov(size, size, 40, look_at((4 * math.sin(a), 0, -4 * math.cos(a)), (0, 0, 0)))
    r = rasterize(m.verts, m.faces, cols, cam.K, cam.world_to_cam, size, size, background=(1, 1, 1), soft=False)
    img = r.image[None]
    mask = r.alpha[None]
    lmk = torch.zeros(1, 478, 3)
    lmk[..., 1] = torch.linspace(-0.5, 0.5, 478)
    lmk[0, 152, 1] = 0.5
    data = ReconData(images=img, masks=mask, valid=torch.ones_like(mask), head=mask, target=img, K=cam.K[None],
                     world_to_cam=cam.world_to_cam[None], expression=torch.zeros(1, 52), landmarks3d=lmk,
                     neutral_index=0, train_idx=torch.tensor([0]), test_idx=torch.tensor([], dtype=torch.long),
                     background=(1.0, 1.0, 1.0), y_cut=10.0, width=size, height=size)
    return data, PriorMesh(m.verts, m.faces, None), cols


def _red_green(img, mask):
    px = img[mask[..., 0] > 0.5]
    red = ((px[:, 0] > 0.6) & (px[:, 1] < 0.4)).float().mean()
    green = ((px[:, 1] > 0.6) & (px[:, 0] < 0.4)).float().mean()
    return float(red), float(green)


def test_symmetric_prior_projects_and_mirrors(tmp_path):
    # frontal neutral frame: the views reproduce the texture (left red, right green)
    data, mesh, _ = _textured_head()
    cams = orbit_cameras(data.K[0], data.world_to_cam[0], (0, 0, 0), 48, 48, n=6, span_deg=120)
    prior = SymmetricPrior()
    views = prior.generate(data, mesh, 0, cams)
    assert views.images.shape == (6, 48, 48, 3) and views.masks.shape == (6, 48, 48, 1)
    assert float(views.masks.mean()) > 0.2
    # in the view turned towards the left side (x<0 -> red) red dominates, and vice versa
    r0, g0 = _red_green(views.images[0], views.masks[0])
    r5, g5 = _red_green(views.images[5], views.masks[5])
    assert (r0 > g0) != (r5 > g5)
    assert max(r0, r5) > 0.6 and max(g0, g5) > 0.6
    assert prior.stats["seen_vertices"] > 0
    # the neutral frame only sees the red side (head turned 80 deg): the green side that no
    # view of the frame shows is filled by mirroring the red side
    data2, mesh2, _ = _textured_head(yaw_deg=-80)
    views2 = prior.generate(data2, mesh2, 0, cams)
    assert prior.stats["mirrored_vertices"] > 0
    rr, gg = [], []
    for k in range(6):
        r, g = _red_green(views2.images[k], views2.masks[k])
        rr.append(r)
        gg.append(g)
    assert min(rr) > 0.8 and max(gg) < 0.05  # everything seen is red, mirrored onto the other side
    # save / load round trip
    save_views(tmp_path / "prior", views)
    back = load_views(tmp_path / "prior", "symmetric")
    assert back.images.shape == views.images.shape
    assert torch.allclose(back.images, views.images, atol=1 / 255 + 1e-6)
    assert torch.allclose(back.world_to_cam, views.world_to_cam)


def test_svd_prior_tiny_random_pipeline(tmp_path):
    pytest.importorskip("diffusers")
    path = tmp_path / "tiny_svd"
    make_tiny_svd(path)
    data, mesh, _ = _textured_head(size=32)
    cams = orbit_cameras(data.K[0], data.world_to_cam[0], (0, 0, 0), 32, 32, n=6, span_deg=120)
    prior = get_prior("svd", path, num_inference_steps=1, orbit_degrees=360.0)
    assert prior.name == "svd" and prior._size() == (16, 16)
    views = prior.generate(data, mesh, 0, cams)
    assert views.images.shape == (6, 32, 32, 3) and views.masks.shape == (6, 32, 32, 1)
    assert torch.isfinite(views.images).all() and float(views.images.min()) >= 0 and float(views.images.max()) <= 1
    # 6 generated frames over 360 deg; yaws -60..60 pick frames around the input view (frame 0)
    assert prior.stats["frames"] == 6
    assert set(prior.stats["picked_frames"]) <= {0, 1, 5}
    assert views.backend == "svd"


def test_svd_prior_by_id_from_hf_cache_offline(hf_offline, tmp_path, monkeypatch):
    """--prior-model accepts a Hugging Face id: the tiny pipeline in a hub-layout cache loads offline;
    an id that is not cached stops with the command that fetches it."""
    from styletalker.errors import MissingModelError
    from styletalker.reconstruct.prior import check_svd_path

    snap = check_svd_path(TINY_SVD_ID)
    assert snap.parent.parent.name == "models--styletalker-tests--tiny-svd" and (snap / "model_index.json").is_file()
    prior = get_prior("svd", TINY_SVD_ID, num_inference_steps=1)
    assert prior._size() == (16, 16) and prior.device == "cpu"
    assert prior.pipe.unet.dtype == torch.float32
    with pytest.raises(MissingModelError, match="--prior-model org/missing-svd.*hf download org/missing-svd"):
        check_svd_path("org/missing-svd")
    with pytest.raises(MissingModelError, match="--prior-model ID|PATH"):
        check_svd_path(None)


def test_svd_prior_frames_the_head_as_image_to_3d_models_expect(franck_work):
    """The svd prior's conditioning image: the neutral frame of the sample clip cut to the square
    centred where the prior cameras' orbit centre projects, the head spanning 80 % of it (the
    framing V3D / SV3D are trained on, so their orbit turns about the same point as the prior's
    cameras); generated frames go back into the cameras' framing through the inverse map."""
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.data import from_dataset
    from styletalker.reconstruct.pipeline import sphere_init
    from styletalker.reconstruct.prior import FRAME_BORDER, SVDPrior, crop_to_window, uncrop_from_window
    from styletalker.reconstruct.raster import project_points

    data = from_dataset(load_dataset(franck_work))
    n = data.neutral_index
    H, W = data.height, data.width
    cams = orbit_cameras(data.K[n], data.world_to_cam[n], sphere_init(data)[0], W, H, n=6, span_deg=120)
    # the orbit centre projects to the same pixel in every prior view
    ctr = torch.tensor([cams.center])
    px = torch.cat([project_points(ctr, cams.K[k], cams.world_to_cam[k])[0] for k in range(len(cams))])
    assert float((px - px[0]).abs().max()) < 1e-3
    cx, cy, side = window = SVDPrior.window(data, n, cams)
    assert (cx, cy) == pytest.approx(tuple(px[0].tolist()), abs=1e-4)
    head = data.head[n].float()
    size = 96
    crop = crop_to_window(head[None], window, (size, size), torch.zeros(1))[0, ..., 0]
    # the whole head is in the square (its area, scaled by the resampling, is kept) ...
    scale = (size / side) ** 2
    assert float(crop.sum()) == pytest.approx(float(head.sum()) * scale, rel=0.02)
    # ... and reaches 1 - FRAME_BORDER of it from the centre, to the pixel
    ys, xs = torch.nonzero(crop > 0.5, as_tuple=True)
    reach = max(float((xs + 0.5 - size / 2).abs().max()), float((ys + 0.5 - size / 2).abs().max())) + 0.5
    assert reach == pytest.approx((1 - FRAME_BORDER) * size / 2, abs=1.5)
    # the frame over white, to the pipeline's size and back: the head comes back where it was, and
    # what lies outside the square (here one half as wide, inside the image) is the background
    white = torch.ones(3)
    frame = data.images[n].float() * head + white * (1 - head)
    x = torch.arange(W) + 0.5
    y = torch.arange(H) + 0.5
    for win in (window, (cx, cy, side / 2)):
        back = uncrop_from_window(crop_to_window(frame[None], win, (4 * H, 4 * W), white), win, H, W, white)[0]
        inside = ((x[None] - cx).abs() < win[2] / 2 - 1) & ((y[:, None] - cy).abs() < win[2] / 2 - 1)
        assert float((back - frame).abs()[inside & (head[..., 0] > 0.5)].mean()) < 0.02
        outside = ((x[None] - cx).abs() > win[2] / 2 + 1) | ((y[:, None] - cy).abs() > win[2] / 2 + 1)
        assert torch.equal(back[outside], white.expand(int(outside.sum()), 3))
    assert int(outside.sum()) > H * W // 2


def test_symmetric_prior_weights_frontally_seen_pixels_in_turned_views():
    # the video frames show a frontally seen point only from the front: in a view turned by 60
    # degrees or more its prior colour counts with turned_front, near the front with the first
    # confidence weight, in between linearly (the seen-at-a-grazing-angle, mirrored and filled
    # pixels keep their weights)
    data, mesh, _ = _textured_head(size=64)
    cams = orbit_cameras(data.K[0], data.world_to_cam[0], (0, 0, 0), 64, 64, n=7, span_deg=180)  # -90..90 by 30
    conf = (0.0, 0.5, 1.0, 0.5)
    plain = SymmetricPrior(confidence=conf).generate(data, mesh, 0, cams)
    turned = SymmetricPrior(confidence=conf, turned_front=1.0).generate(data, mesh, 0, cams)
    for k, yaw in enumerate(cams.yaw_deg):
        m = plain.masks[k, ..., 0] > 0.5
        w0, w1 = plain.weights[k, ..., 0][m], turned.weights[k, ..., 0][m]
        front = w0 == 0  # frontally seen in the neutral frame
        assert torch.equal(w1[~front], w0[~front])
        ramp = min(max((abs(yaw) - 15) / 45, 0.0), 1.0)  # TURN_FROM 15, TURN_AT 60 degrees
        if int(front.sum()) > 0:
            assert torch.allclose(w1[front], torch.full_like(w1[front], ramp), atol=1 / 255 + 1e-6)
        if abs(yaw) < 1:
            assert int(front.sum()) > 0.3 * int(m.sum())  # the frontal view is mostly frontally seen
        if abs(yaw) >= 60:
            assert float(w1.mean()) > float(w0.mean())
    assert torch.equal(turned.images, plain.images)  # only the weights change
