"""Instruct-Pix2Pix editor backend with a tiny, randomly initialised pipeline saved to disk."""

from __future__ import annotations

import numpy as np
import pytest

from styletalker.errors import MissingModelError

pytest.importorskip("diffusers")
pytest.importorskip("transformers")


def make_tiny_ip2p(path):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)  # transformers 5: vocab=dict, merges=list
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16))
    # make the (random) text encoder matter: large token embeddings
    with torch.no_grad():
        te.get_input_embeddings().weight.mul_(20.0)
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                        beta_end=0.012, clip_sample=False)
    pipe = StableDiffusionInstructPix2PixPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sch,
                                                  safety_checker=None, feature_extractor=None,
                                                  requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


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


def test_missing_or_invalid_model_path(tmp_path):
    from styletalker.edit.editors import get_editor

    with pytest.raises(MissingModelError, match="--editor-model"):
        get_editor("ip2p")
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
