"""Tiny randomly initialised diffusion and CLIP models for the tests (no weights are downloaded),
and a Hugging Face cache laid out as huggingface_hub writes it, to load them by id offline.

    make_tiny_ip2p(folder)   # StableDiffusionInstructPix2PixPipeline.save_pretrained
    make_tiny_svd(folder)    # StableVideoDiffusionPipeline.save_pretrained
    make_tiny_clip(folder)   # CLIPModel + CLIPTokenizer + CLIPImageProcessor
    put_in_hf_cache(cache, "org/name", builder)  # cache/models--org--name/{blobs,snapshots/<commit>,refs/main}
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

TINY_IP2P_ID = "styletalker-tests/tiny-instruct-pix2pix"
TINY_SVD_ID = "styletalker-tests/tiny-svd"
TINY_CLIP_ID = "styletalker-tests/tiny-clip"


def tiny_clip_tokenizer(max_length: int = 16):
    """A character-level CLIP BPE tokenizer (transformers 5: vocab=dict, merges=list)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def make_tiny_ip2p(path):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    tok = tiny_clip_tokenizer()
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok.get_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        projection_dim=16))
    # make the (random) text encoder matter: large token embeddings
    with torch.no_grad():
        te.get_input_embeddings().weight.mul_(20.0)
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                        beta_end=0.012, clip_sample=False)
    pipe = StableDiffusionInstructPix2PixPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sch,
                                                  safety_checker=None, feature_extractor=None,
                                                  requires_safety_checker=False)
    pipe.save_pretrained(path)
    return Path(path)


def make_tiny_svd(path):
    import torch
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=16, num_attention_heads=(2, 4), layers_per_block=1,
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=24, num_frames=6)
    vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, block_out_channels=(32, 64),
                                       down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                                       latent_channels=4, layers_per_block=1, sample_size=16)
    # the SVD pipeline resizes the conditioning image to 224 for the CLIP encoder
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, projection_dim=16, num_hidden_layers=1,
                                                          num_attention_heads=2, image_size=224, patch_size=56,
                                                          intermediate_size=16))
    sch = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                 prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                                 timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=enc, unet=unet, scheduler=sch,
                                        feature_extractor=CLIPImageProcessor(crop_size=224, size=224))
    pipe.save_pretrained(path)
    return Path(path)


def make_tiny_clip(path, image_size: int = 32):
    """A CLIP with 16-d embeddings, 8 px patches and the character tokenizer, saved as one folder
    (config.json + model.safetensors + tokenizer and image-processor files), like openai/clip-*."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    tok = tiny_clip_tokenizer(max_length=32)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok.get_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=16)
    model = CLIPModel(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
                       ).save_pretrained(path)
    return Path(path)


def put_in_hf_cache(cache, repo_id: str, builder, commit: str | None = None) -> Path:
    """Build a model with ``builder(folder)`` and store it in the huggingface_hub cache ``cache`` as the
    hub does: ``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<path>`` symlinks to the
    blobs, ``refs/main`` holding the commit. Returns the snapshot folder."""
    cache = Path(cache)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    with tempfile.TemporaryDirectory() as tmp:
        builder(Path(tmp))
        for f in sorted(Path(tmp).rglob("*")):
            if not f.is_file():
                continue
            data = f.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = snap / f.relative_to(tmp)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap
