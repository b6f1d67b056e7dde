"""Instruct-Pix2Pix editor (diffusers), by Hugging Face id (default timbrooks/instruct-pix2pix) or local folder.

Follows the Instruct-NeRF2NeRF / Instruct-GS2GS recipe the paper builds on: the current *render*
is encoded to latents and noised to a level set by the edit strength ``b``; the UNet denoises it
while being conditioned on the *original training image* (image latents concatenated to the input,
Instruct-Pix2Pix style) and on the text instruction, with 3-way classifier-free guidance::

    eps = eps(z, -, -) + s_text * (eps(z, img, text) - eps(z, img, -)) + s_img * (eps(z, img, -) - eps(z, -, -))

Mapping of ``b``: ``s = clip(b, 0.02, 0.98)``; the denoising starts at the scheduler timestep
closest to ``s * num_train_timesteps`` (noise level, like IN2N's random t in [0.02, 0.98]) and runs
the remaining steps of a ``steps``-step DDIM schedule. So small b keeps the render, large b
re-generates it from the original image and the text.

``model_path`` is a Hugging Face id or a folder written by
``StableDiffusionInstructPix2PixPipeline.save_pretrained``, resolved by :mod:`styletalker.hub`
(cache reuse, download when online, ``HF_HUB_OFFLINE=1``). A missing or invalid folder, or an id
that is not cached when offline, raises :class:`~styletalker.errors.MissingModelError`.

Device and precision: ``device`` as ``--device`` (``auto``: CUDA when available); the weights are
loaded in float16 on CUDA and float32 on the CPU (:func:`styletalker.device.model_dtype`, or
``dtype=``) and every input (images, latents, noise, text embeddings) is cast to that device and
dtype; the result is float32 on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MissingModelError, StyleTalkerError
from .editors import Editor, as_float_image
from .regions import FaceInfo


class InstructPix2PixEditor(Editor):
    name = "ip2p"

    def __init__(self, model_path: str | os.PathLike | None = None, *, steps: int = 20, guidance_scale: float = 7.5,
                 image_guidance_scale: float = 1.5, size: int | None = 512, device: str | None = None,
                 dtype=None):
        from ..device import check_placement, model_dtype, resolve_device
        from ..hub import DEFAULT_EDITOR_MODEL, IP2P, resolve_model

        ref = str(model_path) if model_path else DEFAULT_EDITOR_MODEL
        path = resolve_model(ref, IP2P)  # MissingModelError: folder missing, id not cached offline, ...
        try:
            import torch  # noqa: F401
            from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline
        except ImportError as e:  # pragma: no cover - extra not installed
            raise StyleTalkerError(
                f"--editor ip2p needs the diffusion extra: pip install 'styletalker[diffusion]' ({e})"
            ) from None
        self.device = resolve_device(device)
        self.dtype = dtype or model_dtype(self.device)  # float16 on CUDA, float32 on the CPU
        try:  # no loading progress bars: the files are local by now
            from diffusers.utils import logging as diffusers_logging

            diffusers_logging.disable_progress_bar()
            import transformers

            transformers.utils.logging.disable_progress_bar()
        except Exception:  # pragma: no cover - cosmetic only
            pass
        try:
            pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
                str(path), local_files_only=True, safety_checker=None, requires_safety_checker=False,
                dtype=self.dtype, use_safetensors=True,  # no pickled .bin weights from a foreign folder
            )
        except Exception as e:
            raise MissingModelError(f"{ref}: could not load an Instruct-Pix2Pix pipeline from {path} "
                                    f"({type(e).__name__}: {e})") from None
        pipe = pipe.to(self.device)  # already in self.dtype (from_pretrained dtype=)
        # weights and the inputs built below share one device and dtype
        check_placement(self.device, self.dtype, pipe.unet, pipe.vae, pipe.text_encoder)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.model = ref
        self.model_path = str(path)
        self.steps = int(steps)
        self.guidance_scale = float(guidance_scale)
        self.image_guidance_scale = float(image_guidance_scale)
        self.size = size
        self._text_cache: dict[str, object] = {}

    def describe(self) -> dict:
        return {"editor": self.name, "model": self.model, "steps": self.steps,
                "guidance_scale": self.guidance_scale, "image_guidance_scale": self.image_guidance_scale,
                "size": self.size}

    # -- helpers -----------------------------------------------------------------------------
    def _text_embeddings(self, prompt: str):
        import torch

        if prompt not in self._text_cache:
            tok, enc = self.pipe.tokenizer, self.pipe.text_encoder

            def embed(texts):
                ids = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt").input_ids.to(self.device)
                with torch.no_grad():
                    return enc(ids)[0]

            cond, uncond = embed([prompt]), embed([""])
            self._text_cache[prompt] = torch.cat([cond, uncond, uncond]).to(self.dtype)
        return self._text_cache[prompt]

    def _work_size(self, h: int, w: int) -> tuple[int, int]:
        f = 8 if self.size else 1
        vae_f = 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)
        f = max(f, vae_f)
        if self.size:
            s = self.size / max(h, w)
            h, w = h * s, w * s
        return max(f, int(round(h / f)) * f), max(f, int(round(w / f)) * f)

    def _to_tensor(self, img: np.ndarray, hw: tuple[int, int]):
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(img).permute(2, 0, 1)[None].to(self.device, torch.float32)
        if tuple(t.shape[-2:]) != hw:
            t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=True)
        return (t * 2 - 1).to(self.dtype)

    # -- the edit ----------------------------------------------------------------------------
    def edit(self, render, original, prompt, b, face: FaceInfo | None = None, seed=None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        self.check_prompt(prompt)
        rnd = as_float_image(render)
        org = as_float_image(original)
        H, W = org.shape[:2]
        hw = self._work_size(H, W)
        vae, unet = self.pipe.vae, self.pipe.unet
        sf = float(getattr(vae.config, "scaling_factor", 0.18215))
        gen = torch.Generator(device="cpu").manual_seed(int(seed) if seed is not None else 0)
        s = float(np.clip(b, 0.02, 0.98))
        with torch.no_grad():
            x = self._to_tensor(rnd, hw)
            latents = vae.encode(x).latent_dist.sample(generator=gen) * sf
            cond = vae.encode(self._to_tensor(org, hw)).latent_dist.mode()
            image_latents = torch.cat([cond, cond, torch.zeros_like(cond)])
            text = self._text_embeddings(prompt)

            sch = self.scheduler
            sch.set_timesteps(self.steps, device=self.device)
            target_t = s * sch.config.num_train_timesteps
            start = int(torch.argmin((sch.timesteps.float() - target_t).abs()))
            timesteps = sch.timesteps[start:]
            noise = torch.randn(latents.shape, generator=gen, dtype=torch.float32).to(self.device, self.dtype)
            latents = sch.add_noise(latents, noise, timesteps[:1])
            for t in timesteps:
                inp = torch.cat([latents] * 3)
                inp = torch.cat([sch.scale_model_input(inp, t), image_latents], dim=1)
                eps = unet(inp, t, encoder_hidden_states=text).sample
                e_text, e_img, e_unc = eps.chunk(3)
                eps = e_unc + self.guidance_scale * (e_text - e_img) + self.image_guidance_scale * (e_img - e_unc)
                latents = sch.step(eps, t, latents).prev_sample
            img = vae.decode(latents / sf).sample
            img = ((img.float() + 1) / 2).clamp(0, 1)
            if tuple(img.shape[-2:]) != (H, W):
                img = F.interpolate(img, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        return img[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
