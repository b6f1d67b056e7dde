"""Standard 3DGS .ply export / import."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker.errors import InputError
from styletalker.render import Camera, look_at, render
from styletalker.render.ply import SH_C0, load_ply, save_ply

HEADER_3DGS = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
TAIL_3DGS = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def gaussians(n=257, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        means=torch.randn(n, 3, generator=g) * 0.3,
        quats=torch.randn(n, 4, generator=g),
        scales=torch.exp(torch.rand(n, 3, generator=g) * 3 - 5),
        opacities=torch.rand(n, generator=g) * 0.98 + 0.01,
        colors=torch.rand(n, 3, generator=g),
    )


def header_of(path):
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    return raw[:end].decode("ascii").splitlines(), raw[end:]


@pytest.mark.parametrize("sh_degree", [3, 0])
def test_round_trip_standard_layout(tmp_path, sh_degree):
    g = gaussians()
    p = save_ply(tmp_path / "a.ply", **g, sh_degree=sh_degree)
    lines, body = header_of(p)
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    props = [ln.split()[-1] for ln in lines if ln.startswith("property")]
    n_rest = 45 if sh_degree == 3 else 0
    assert props == HEADER_3DGS + [f"f_rest_{i}" for i in range(n_rest)] + TAIL_3DGS
    assert all(ln.split()[1] == "float" for ln in lines if ln.startswith("property"))
    assert f"element vertex {len(g['means'])}" in lines
    assert len(body) == len(g["means"]) * len(props) * 4
    # raw values are the 3DGS parameterisation
    rec = np.frombuffer(body, dtype="<f4").reshape(len(g["means"]), len(props))
    i = props.index
    np.testing.assert_allclose(rec[:, i("opacity")], torch.logit(g["opacities"]).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rec[:, i("scale_0")], torch.log(g["scales"][:, 0]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(rec[:, i("f_dc_1")], ((g["colors"][:, 1] - 0.5) / SH_C0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rec[:, i("rot_0")], g["quats"][:, 0].numpy())

    back = load_ply(p)
    for k, v in g.items():
        assert back[k].shape == v.shape, k
        assert torch.allclose(back[k], v, rtol=1e-5, atol=2e-6), k
    assert ("sh_rest" in back) == (sh_degree > 0)
    if sh_degree:
        assert back["sh_rest"].shape == (len(g["means"]), 15, 3) and float(back["sh_rest"].abs().max()) == 0

    # the loaded Gaussians render the same image
    cam = Camera.from_fov(32, 32, 60.0, look_at((0.0, 0.0, -1.5), (0.0, 0.0, 0.0)))
    a = render(**g, camera=cam, background=(1, 1, 1)).image
    b = render(**{k: back[k] for k in g}, camera=cam, background=(1, 1, 1)).image
    assert float((a - b).abs().max()) < 1e-4


def test_load_file_with_f_rest_written_elsewhere(tmp_path):
    """A 3DGS-trainer style file: normals, 45 f_rest (channel-major), extra comment, other order of
    nothing but the standard properties."""
    n = 5
    rng = np.random.default_rng(1)
    names = HEADER_3DGS + [f"f_rest_{i}" for i in range(45)] + TAIL_3DGS
    vals = rng.normal(size=(n, len(names))).astype("<f4")
    header = "ply\nformat binary_little_endian 1.0\ncomment made by another tool\nelement vertex 5\n"
    header += "".join(f"property float {nm}\n" for nm in names) + "end_header\n"
    p = tmp_path / "other.ply"
    p.write_bytes(header.encode() + vals.tobytes())
    g = load_ply(p)
    col = {nm: vals[:, j] for j, nm in enumerate(names)}
    np.testing.assert_allclose(g["means"].numpy(), np.stack([col["x"], col["y"], col["z"]], 1))
    np.testing.assert_allclose(g["scales"].numpy(), np.exp(np.stack([col[f"scale_{k}"] for k in range(3)], 1)), rtol=1e-6)
    np.testing.assert_allclose(g["opacities"].numpy(), 1 / (1 + np.exp(-col["opacity"])), rtol=1e-6)
    np.testing.assert_allclose(g["colors"].numpy(), 0.5 + SH_C0 * np.stack([col[f"f_dc_{k}"] for k in range(3)], 1), rtol=1e-6)
    np.testing.assert_allclose(g["quats"].numpy(), np.stack([col[f"rot_{k}"] for k in range(4)], 1))
    # f_rest_{c*15 + j} is coefficient j of channel c
    assert g["sh_rest"].shape == (5, 15, 3)
    assert float(g["sh_rest"][2, 4, 1]) == pytest.approx(float(col["f_rest_19"][2]))
    assert float(g["sh_rest"][3, 14, 2]) == pytest.approx(float(col["f_rest_44"][3]))


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_ply(tmp_path / "missing.ply")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"hello\n")
    with pytest.raises(InputError, match="not a .ply"):
        load_ply(bad)
    mesh = tmp_path / "mesh.ply"
    mesh.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                     b"property float y\nproperty float z\nend_header\n" + np.zeros(3, "<f4").tobytes())
    with pytest.raises(InputError, match="missing properties"):
        load_ply(mesh)
    g = gaussians(4)
    p = save_ply(tmp_path / "t.ply", **g)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        load_ply(p)


def test_save_validates_and_is_atomic(tmp_path):
    g = gaussians(4)
    with pytest.raises(ValueError, match="colors"):
        save_ply(tmp_path / "x.ply", **{**g, "colors": torch.rand(4, 5)})
    with pytest.raises(ValueError, match="scales must be positive"):
        save_ply(tmp_path / "x.ply", **{**g, "scales": -g["scales"]})
    assert not list(tmp_path.iterdir())
