"""The C++ visibility pass of the mesh rasterizer (render/csrc/mesh_cpu.cpp) against the PyTorch one
it replaces on the CPU: the same face for every pixel, bit for bit, on real head surfaces seen by the
clip's cameras and from all around, hard and soft, and the same limit on face/pixel pairs. (The
C++ follows the rounding of torch's AVX2 kernels, the fused multiply-add of its vector norm
included: on a CPU where torch rounds otherwise, an exact tie at the soft edge could differ.)"""

import pytest
import torch

from styletalker.errors import SettingsError
from styletalker.reconstruct import raster
from styletalker.render import _ext


@pytest.fixture(scope="module")
def heads(franck_avatar_work):
    """(dataset, [(verts, faces)]): the test reconstruction's stage-1 surface and the clip's starting
    hull at the cpu preset's grid (finer: ~24 000 triangles)."""
    from dataclasses import asdict

    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct import config as C
    from styletalker.reconstruct.data import from_options
    from styletalker.reconstruct.mesh_io import read_obj
    from styletalker.reconstruct.pipeline import build_mesh_model, set_initial_shape

    ds = load_dataset(franck_avatar_work)
    v, f, _ = read_obj(franck_avatar_work / "reconstruct" / "mesh" / "mesh.obj")
    cfg = C.make_config("cpu", "cpu")
    data = from_options(ds, asdict(cfg.data))
    model = build_mesh_model(cfg, data)
    set_initial_shape(model, cfg, data)
    with torch.no_grad():
        hull = model.extract()
    assert hull.faces.shape[0] > 10_000
    return data, [(torch.from_numpy(v).float(), torch.from_numpy(f)), (hull.verts, hull.faces)]


def _inputs(verts, faces, K, w2c, W, H, pad, near=0.05):
    """The arguments of raster._visibility, prepared as raster.rasterize prepares them."""
    xy, z = raster.project_points(verts, K, w2c)
    fxy, fz = xy[faces], z[faces]
    return (fxy, fz) + raster._faces_in_view(fxy, fz, W, H, pad, near)


def _views(data):
    from styletalker.reconstruct.pipeline import sphere_init
    from styletalker.reconstruct.prior import orbit_cameras

    n = data.neutral_index
    for i in range(0, len(data), 7):
        yield data.K[i], data.world_to_cam[i], data.width, data.height
    cams = orbit_cameras(data.K[n], data.world_to_cam[n], sphere_init(data)[0], data.width, data.height, n=12,
                         span_deg=360)
    for k in range(len(cams.K)):
        yield cams.K[k], cams.world_to_cam[k], data.width, data.height
        K2 = cams.K[k].clone()
        K2[:2] *= 2  # the same view at twice the size: smaller triangles in pixels
        yield K2, cams.world_to_cam[k], 2 * data.width, 2 * data.height


def test_cpp_visibility_matches_torch_bit_for_bit(heads):
    assert raster._mesh_extension(torch.zeros(1)) is not None, _ext.extension_error()
    data, meshes = heads
    pixels = band = 0
    for verts, faces in meshes:
        for K, w2c, W, H in _views(data):
            for soft, sigma in ((False, 0.5), (True, 0.5), (True, 1.0)):
                pad = raster.math.ceil(3 * sigma) if soft else 0
                args = _inputs(verts, faces, K, w2c, W, H, pad) + (W, H, pad, soft, 20_000_000)
                ours = raster._visibility(*args)
                ref = raster._visibility_torch(*args)
                for a, b in zip(ours, ref):
                    assert a.dtype == b.dtype and torch.equal(a, b)
                pixels += len(ref[1])
                band += int((~ref[4]).sum())
    assert pixels > 100_000 and band > 5_000  # the heads were in view, with soft edges


def test_pair_limit_is_the_same_on_both_paths(heads):
    """Over the limit on face/pixel pairs (as a blown-up surface or a huge image would be) both
    paths raise the same settings error, for the triangles' own boxes and for the soft edge's
    dilated ones (a wide edge: pad 9), and at the limit neither does."""
    data, meshes = heads
    verts, faces = meshes[1]
    K, w2c, W, H = data.K[data.neutral_index], data.world_to_cam[data.neutral_index], data.width, data.height
    pad = 9
    fxy, fz, lo, hi, fids = _inputs(verts, faces, K, w2c, W, H, pad)
    hard = raster._pair_count(fids, lo, hi, 0, W, H)
    ext = raster._mesh_extension(fxy)
    assert ext is not None, _ext.extension_error()
    band = int(ext.mesh_visibility(fxy, fz, fids, W, H, pad, True, 10**12)[2])
    assert band > hard > 1000
    for limit, raises in ((hard - 1, True), (band - 1, True), (band, False)):
        for fn in (raster._visibility, raster._visibility_torch):
            if raises:
                with pytest.raises(SettingsError, match="data.size"):
                    fn(fxy, fz, lo, hi, fids, W, H, pad, True, limit)
            else:
                assert len(fn(fxy, fz, lo, hi, fids, W, H, pad, True, limit)[1]) > 1000
