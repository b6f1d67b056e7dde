"""CLIP-S / CLIP-DS with the tiny random CLIP loaded by id from a hub-layout cache, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker.errors import MissingModelError
from tiny_models import TINY_CLIP_ID

pytest.importorskip("transformers")


def _images(n=4, seed=0, size=40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    return [np.clip(np.stack([xx * (k + 1) / n, yy, 0.5 + 0 * xx], -1) + 0.1 * rng.standard_normal((size, size, 3)),
                    0, 1).astype(np.float32) for k in range(n)]


@pytest.fixture
def scorer(hf_offline):
    from styletalker.clip_metrics import ClipScorer

    return ClipScorer(TINY_CLIP_ID, device="cpu")


def test_embeddings_are_the_models(scorer):
    """Image / text embeddings: the model's projected features of its own preprocessing, unit length."""
    ims = _images()
    e = scorer.image_embeddings(ims)
    assert e.shape == (4, 16) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    u8 = [(im * 255).round().astype(np.uint8) for im in ims]
    px = scorer.processor(images=u8, return_tensors="pt")["pixel_values"]
    assert px.shape[-2:] == (32, 32)  # resized / cropped to the model's input size
    with torch.no_grad():
        out = scorer.model.get_image_features(pixel_values=px)
    ref = (out if torch.is_tensor(out) else out.pooler_output).numpy()
    assert np.allclose(e, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    t = scorer.text_embeddings(["a photo of a person", "make him blue"])
    assert t.shape == (2, 16) and np.abs(t[0] @ t[1]) < 0.999  # different texts, different embeddings
    assert scorer.describe() == {"model": TINY_CLIP_ID, "device": "cpu", "dtype": "float32"}


def test_clip_score_and_direction(scorer):
    from styletalker.clip_metrics import clip_scores

    orig, edit = _images(seed=0), _images(seed=1)[::-1]
    s = clip_scores(scorer, orig, edit, "make him blue", "a photo of a person")
    img0, img1 = scorer.image_embeddings(orig), scorer.image_embeddings(edit)
    t_src, t_edit = scorer.text_embeddings(["a photo of a person", "make him blue"])
    assert np.isclose(s["clip_score"], float(np.mean(img1 @ t_edit)), atol=1e-6)
    assert np.isclose(s["clip_score_original"], float(np.mean(img0 @ t_edit)), atol=1e-6)
    d = img1 - img0
    dt = (t_edit - t_src) / np.linalg.norm(t_edit - t_src)
    assert np.isclose(s["clip_directional"], float(np.mean((d / np.linalg.norm(d, axis=1, keepdims=True)) @ dt)),
                      atol=1e-6)
    assert -1 <= s["clip_directional"] <= 1 and len(s["per_view"]["clip_score"]) == 4
    back = clip_scores(scorer, edit, orig, "make him blue", "a photo of a person")
    assert np.isclose(back["clip_directional"], -s["clip_directional"], atol=1e-6)  # reversed edit
    same = clip_scores(scorer, orig, orig, "make him blue", "a photo of a person")
    assert same["clip_directional"] == 0.0 and same["clip_score"] == same["clip_score_original"]


def test_bfloat16_weights_on_cpu(scorer, hf_offline):
    from styletalker.clip_metrics import ClipScorer
    from styletalker.device import module_placement

    half = ClipScorer(TINY_CLIP_ID, device="cpu", dtype=torch.bfloat16)
    assert module_placement(half.model) == (torch.device("cpu"), torch.bfloat16)
    a, b = half.image_embeddings(_images()), scorer.image_embeddings(_images())
    assert a.dtype == np.float32 and float(np.min(np.sum(a * b, axis=1))) > 0.99


def test_default_model_offline_not_cached(tmp_path, monkeypatch):
    from styletalker.clip_metrics import ClipScorer

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingModelError, match="--clip-model openai/clip-vit-large-patch14.*"
                                                "hf download openai/clip-vit-large-patch14"):
        ClipScorer(device="cpu")
