"""Instruct-Pix2Pix editor backend with a tiny, randomly initialised pipeline saved to disk."""

from __future__ import annotations

import numpy as np
import pytest

from styletalker.errors import MissingModelError
from tiny_models import TINY_IP2P_ID, make_tiny_ip2p

pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_ip2p(tmp_path_factory.mktemp("tiny_ip2p") / "model")


@pytest.fixture(scope="module")
def editor(tiny_model):
    from styletalker.edit.editors import get_editor

    return get_editor("ip2p", model_path=tiny_model, steps=4, size=32)


def test_tiny_pipeline_edits(editor):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48] / 48.0
    original = np.stack([xx, yy, 0.5 + 0 * xx], -1).astype(np.float32)
    render = np.clip(original + 0.05 * rng.standard_normal(original.shape), 0, 1).astype(np.float32)
    out = editor.edit(render, original, "make him blue", 0.8, None, seed=0)
    assert out.shape == original.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - render).mean() > 0.02  # a random model really changes the image
    again = editor.edit(render, original, "make him blue", 0.8, None, seed=0)
    assert np.array_equal(out, again)  # deterministic for a seed
    other_seed = editor.edit(render, original, "make him blue", 0.8, None, seed=1)
    other_prompt = editor.edit(render, original, "zzzz qqq", 0.8, None, seed=0)
    assert np.abs(out - other_seed).mean() > 1e-3
    assert np.abs(out - other_prompt).mean() > 1e-4
    # b is the noise level: a small b starts later in the schedule, i.e. stays closer to the render
    low = editor.edit(render, original, "make him blue", 0.05, None, seed=0)
    assert np.abs(low - render).mean() < np.abs(out - render).mean()
    assert editor.describe()["editor"] == "ip2p"


def test_missing_or_invalid_model_path(tmp_path, monkeypatch):
    from styletalker.edit.editors import get_editor

    # no --editor-model: the default id, not in this (empty) cache and offline -> how to fetch it
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingModelError, match="--editor-model timbrooks/instruct-pix2pix") as ei:
        get_editor("ip2p")
    msg = str(ei.value)
    assert "hf download timbrooks/instruct-pix2pix" in msg and "HF_HUB_OFFLINE=1" in msg
    assert str(tmp_path / "empty_cache") in msg and "HF_HOME" in msg
    with pytest.raises(MissingModelError, match="not found"):
        get_editor("ip2p", model_path=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingModelError, match="model_index.json"):
        get_editor("ip2p", model_path=tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(MissingModelError, match="could not load"):
        get_editor("ip2p", model_path=bad)


def test_load_by_id_from_hf_cache_offline(hf_offline):
    """The tiny pipeline stored in a Hugging Face cache (hub layout) loads by id with HF_HUB_OFFLINE=1
    and edits exactly like the same pipeline loaded from its snapshot folder."""
    from styletalker.edit.editors import get_editor

    ed = get_editor("ip2p", model_path=TINY_IP2P_ID, steps=2, size=32)
    snap = next((hf_offline / "models--styletalker-tests--tiny-instruct-pix2pix" / "snapshots").iterdir())
    assert ed.model_path == str(snap) and ed.describe()["model"] == TINY_IP2P_ID
    ref = get_editor("ip2p", model_path=snap, steps=2, size=32)
    img = np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)
    assert np.array_equal(ed.edit(img, img, "make him blue", 0.6, None, seed=3),
                          ref.edit(img, img, "make him blue", 0.6, None, seed=3))
    with pytest.raises(MissingModelError, match="styletalker-tests/not-there.*hf download styletalker-tests/not-there"):
        get_editor("ip2p", model_path="styletalker-tests/not-there")


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_half_precision_weights_on_cpu(tiny_model, dtype_name):
    """dtype/device plumbing: weights loaded in half precision, every input cast to it; the result
    is float32 and close to the float32 pipeline's."""
    import torch

    from styletalker.device import module_placement
    from styletalker.edit.editors import get_editor

    dt = getattr(torch, dtype_name)
    half = get_editor("ip2p", model_path=tiny_model, steps=2, size=32, device="cpu", dtype=dt)
    full = get_editor("ip2p", model_path=tiny_model, steps=2, size=32, device="cpu")
    assert module_placement(half.pipe.unet, half.pipe.vae, half.pipe.text_encoder) == (torch.device("cpu"), dt)
    assert module_placement(full.pipe.unet, full.pipe.vae, full.pipe.text_encoder) == (torch.device("cpu"), torch.float32)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    img = np.stack([xx, yy, 0.5 + 0 * xx], -1).astype(np.float32)
    a = half.edit(img, img, "make him blue", 0.5, None, seed=0)
    b = full.edit(img, img, "make him blue", 0.5, None, seed=0)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    assert half._text_embeddings("make him blue").dtype == dt
    diff = np.abs(a - b).mean()
    assert 0 < diff < 0.05  # same computation in lower precision (measured: bf16 4e-3, fp16 5e-4, vs 0.24 edit)


def test_cuda_device_refused_without_gpu(tiny_model):
    import torch

    from styletalker.edit.editors import get_editor
    from styletalker.errors import InputError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="CUDA is not available"):
        get_editor("ip2p", model_path=tiny_model, device="cuda")


def test_cli_reports_missing_model(tmp_path, capsys):
    from styletalker.cli import main

    rc = main(["edit", str(tmp_path), "--prompt", "make him a clown", "--editor", "ip2p",
               "--editor-model", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "missing" in err and ("not found" in err or "reconstruct" in err)


def test_edit_loop_with_ip2p(franck_avatar_work, tiny_model):
    """The whole `styletalker edit` loop with the (tiny) Instruct-Pix2Pix backend on the real clip."""
    from styletalker.edit.loop import run_edit
    from styletalker.workdir import is_complete, read_json

    out = run_edit(franck_avatar_work, "make him a clown", name="ip2p", editor="ip2p", editor_model=str(tiny_model),
                   iters=6, update_every=3, ip2p_size=32, ip2p_steps=2, progress_bars=False, evaluate=False)
    assert is_complete(out)
    cfg = read_json(out / "config.json")
    assert cfg["editor"]["editor"] == "ip2p" and cfg["update_every"] == 3
    strengths = read_json(out / "dataset" / "strengths.json")
    assert 1 <= len(strengths) <= 6 and len(list((out / "dataset").glob("*.png"))) == len(strengths)
