"""LPIPS (AlexNet v0.1) in plain PyTorch against the `lpips` package, and where its weights come from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker.errors import MissingModelError
from styletalker.perceptual import ALEXNET_FILE, LPIPS, _load_state, backbone_path, linear_weights_path, load_lpips

pytest.importorskip("safetensors")
_LAYERS = {0: (3, 64, 11), 3: (64, 192, 5), 6: (192, 384, 3), 8: (384, 256, 3), 10: (256, 256, 3)}


def random_alexnet(seed=0) -> dict:
    """AlexNet ``features`` weights in torchvision's layout, He-initialised from a numpy seed."""
    rng = np.random.default_rng(seed)
    sd = {}
    for i, (cin, cout, k) in _LAYERS.items():
        sd[f"features.{i}.weight"] = torch.from_numpy(rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))
                                                      .astype(np.float32))
        sd[f"features.{i}.bias"] = torch.from_numpy(rng.normal(0, 0.01, cout).astype(np.float32))
    return sd


def images(seed=1, h=64, w=48):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a = np.clip(np.stack([xx, yy, 0.5 + 0 * xx], -1) + 0.1 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)
    return [a, np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32),
            (1 - a).astype(np.float32), a[::-1].copy()]


# lpips 0.1.4 `LPIPS(net="alex")(a, b, normalize=True)` with the backbone above (torchvision 0.28's
# AlexNet layers) and its own alex.pth linear weights, for images()[0] against images()[1..3]
LPIPS_PACKAGE = [0.006739507894963026, 0.3045094609260559, 0.23920127749443054]


@pytest.fixture(scope="module")
def lp():
    return LPIPS(random_alexnet(), _load_state(linear_weights_path()))


def test_matches_the_lpips_package(lp):
    ims = images()
    got = [lp.distance(ims[0], ims[j]) for j in (1, 2, 3)]
    assert np.allclose(got, LPIPS_PACKAGE, rtol=1e-5, atol=1e-8)
    assert lp.distance(ims[0], ims[0]) == 0.0
    assert abs(lp.distance(ims[2], ims[0]) - got[1]) < 1e-6  # symmetric
    u8 = [(np.clip(x, 0, 1) * 255).round().astype(np.uint8) for x in ims[:2]]
    assert abs(lp.distance(*u8) - got[0]) < 2e-3  # uint8 input is read as [0, 255]


def test_backbone_sources(tmp_path, monkeypatch, hf_offline):
    from safetensors.torch import save_file
    from tiny_models import put_in_hf_cache

    sd = random_alexnet()
    # default: torchvision's file in the torch hub cache; offline and absent -> how to get it
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingModelError, match=f"{ALEXNET_FILE} are not in .*HF_HUB_OFFLINE=1.*--lpips-model"):
        backbone_path()
    ck = tmp_path / "torch" / "hub" / "checkpoints" / ALEXNET_FILE
    ck.parent.mkdir(parents=True)
    torch.save(sd, ck)
    assert backbone_path() == ck and backbone_path("alexnet") == ck
    # a file, a folder with one weights file, a Hugging Face id in the cache
    st = tmp_path / "dir" / "alexnet.safetensors"
    st.parent.mkdir()
    save_file(sd, str(st))
    assert backbone_path(st) == st and backbone_path(st.parent) == st
    put_in_hf_cache(hf_offline, "org/alexnet", lambda d: save_file(sd, str(d / "model.safetensors")))
    assert backbone_path("org/alexnet").name == "model.safetensors"
    ims = images()
    for ref in (None, st, "org/alexnet"):
        assert abs(load_lpips(ref).distance(ims[0], ims[1]) - LPIPS_PACKAGE[0]) < 1e-7
    # not AlexNet weights / not there
    save_file({"x": torch.zeros(2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(MissingModelError, match="missing features.0.weight"):
        load_lpips(tmp_path / "bad.safetensors")
    with pytest.raises(MissingModelError, match="no such AlexNet weights"):
        backbone_path(tmp_path / "nope.pth")
    with pytest.raises(MissingModelError, match="hf download org/none"):
        backbone_path("org/none")
