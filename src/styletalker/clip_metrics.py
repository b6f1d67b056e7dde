"""CLIP editing metrics of the paper's Table 1 (computed as in GaussCtrl / Instruct-Pix2Pix):

* **CLIP-S** (CLIP score, Hessel et al. 2021, without the 2.5 rescaling): cosine similarity of the
  CLIP image embedding of an edited view and the text embedding of the edit prompt, averaged over
  views;
* **CLIP-DS** (CLIP directional similarity, Gal et al. 2022 / Brooks et al. 2023): cosine
  similarity of the change in image embedding (edited view - original view of the same camera)
  and the change in text embedding (edit prompt - source caption, e.g. "a photo of a person"),
  averaged over views.

The paper uses CLIP ViT-L/14 (``openai/clip-vit-large-patch14``, the default of ``--clip-model``);
any transformers ``CLIPModel`` folder or Hugging Face id works (:mod:`styletalker.hub`). Weights are
float16 on CUDA and float32 on the CPU (:func:`styletalker.device.model_dtype`); images are
preprocessed with the model's own image processor (resize, centre crop, normalisation) and cast to
the weights' device and dtype; embeddings are compared in float32.
"""

from __future__ import annotations

import numpy as np

from .errors import MissingModelError, StyleTalkerError


def _features(out):
    """transformers 4 returns the projected embeddings, 5 an output whose pooler_output holds them."""
    import torch

    return out if torch.is_tensor(out) else out.pooler_output


class ClipScorer:
    """A CLIP model on a device: ``image_embeddings``, ``text_embeddings`` (unit vectors, float32 CPU)."""

    def __init__(self, model: str | None = None, device: str | None = "auto", dtype=None, batch: int = 8):
        from .device import check_placement, model_dtype, resolve_device
        from .hub import CLIP, DEFAULT_CLIP_MODEL, resolve_model

        self.model_ref = str(model) if model else DEFAULT_CLIP_MODEL
        path = resolve_model(self.model_ref, CLIP)
        try:
            import transformers
            from transformers import AutoTokenizer, CLIPModel
        except ImportError as e:  # pragma: no cover - the diffusion extra brings transformers
            raise StyleTalkerError(f"CLIP metrics need transformers: pip install 'styletalker[diffusion]' ({e})") from None
        # the PIL image processor: the default one wants torchvision, which is not a dependency
        processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        transformers.utils.logging.disable_progress_bar()  # the files are local by now
        self.device = resolve_device(device)
        self.dtype = dtype or model_dtype(self.device)
        try:
            self.model = CLIPModel.from_pretrained(str(path), dtype=self.dtype,  # no pickled .bin weights
                                                   use_safetensors=True).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.processor = processor_cls.from_pretrained(str(path))
        except Exception as e:
            raise MissingModelError(f"{self.model_ref}: could not load a CLIP model from {path} "
                                    f"({type(e).__name__}: {e})") from None
        check_placement(self.device, self.dtype, self.model)
        self.batch = int(batch)

    def describe(self) -> dict:
        return {"model": self.model_ref, "device": self.device, "dtype": str(self.dtype).replace("torch.", "")}

    def image_embeddings(self, images) -> np.ndarray:
        """(N, D) unit embeddings of RGB images (uint8 or [0, 1] float (H, W, 3))."""
        import torch

        from .workdir import to_uint8

        out = []
        for k in range(0, len(images), self.batch):
            chunk = [to_uint8(np.asarray(im)) for im in images[k:k + self.batch]]
            px = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                f = _features(self.model.get_image_features(pixel_values=px.to(self.device, self.dtype)))
            out.append(f.float().cpu())
        e = torch.cat(out)
        return (e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """(N, D) unit embeddings of texts (truncated to the model's context length)."""
        import torch

        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            f = _features(self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                       attention_mask=tok["attention_mask"].to(self.device)))
        e = f.float().cpu()
        return (e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def clip_scores(scorer: ClipScorer, original, edited, prompt: str, source_caption: str) -> dict:
    """CLIP-S of the edited and the original views with ``prompt`` and CLIP-DS between them (views
    paired by index). Returns means and per-view values."""
    if len(original) != len(edited) or not len(edited):
        raise ValueError("need the same, non-zero number of original and edited views")
    img0, img1 = scorer.image_embeddings(original), scorer.image_embeddings(edited)
    t_src, t_edit = scorer.text_embeddings([source_caption, prompt])
    s_edit, s_orig = img1 @ t_edit, img0 @ t_edit
    d_img = img1 - img0
    moved = np.linalg.norm(d_img, axis=-1) > 1e-6  # an unchanged view has no direction
    ds = np.where(moved, _unit(d_img) @ _unit(t_edit - t_src), 0.0)
    return {"clip_score": float(s_edit.mean()), "clip_score_original": float(s_orig.mean()),
            "clip_directional": float(ds.mean()), "per_view": {"clip_score": s_edit.tolist(),
                                                               "clip_directional": ds.tolist()}}
