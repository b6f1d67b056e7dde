"""Model weights by Hugging Face id or local folder (``--editor-model``, ``--prior-model``,
``--clip-model``, ``--lpips-model``).

    path = resolve_model("timbrooks/instruct-pix2pix", IP2P)   # -> a local snapshot folder
    path = resolve_model("/data/ip2p", IP2P)                   # a folder is used as it is

* A **local folder** (any existing directory, or a reference starting with ``/``, ``.`` or ``~``)
  is used as it is; it must hold the kind's marker file (``model_index.json`` for a diffusers
  pipeline, ``config.json`` for a transformers model).
* An **id** (``org/name``, optionally ``org/name@revision``) resolves through huggingface_hub's
  cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub`` = ``~/.cache/huggingface/hub``): files already
  there are reused, missing ones are downloaded with a progress bar (only the files a kind needs:
  configs, tokenizer files and ``.safetensors`` weights of the sub-folders), and with
  ``HF_HUB_OFFLINE=1`` nothing is downloaded.
* An id that is neither cached nor downloadable (offline, no network, unknown or gated repo) raises
  :class:`~styletalker.errors.MissingModelError` naming the id and the command that fetches it on a
  connected machine (:func:`fetch_command`).

The environment is read at each call (not when huggingface_hub is imported), so ``HF_HOME``,
``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` set by a test or a wrapper script take effect.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingModelError

DEFAULT_EDITOR_MODEL = "timbrooks/instruct-pix2pix"
DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
DEFAULT_LPIPS_MODEL = "alexnet"  # torchvision's ImageNet AlexNet in the torch hub cache (styletalker.perceptual)


@dataclass(frozen=True)
class ModelKind:
    """What a model reference must resolve to."""

    what: str  # for messages: "Instruct-Pix2Pix pipeline"
    flag: str  # the CLI option that names it
    marker: str | None  # file the folder must contain (None: checked by the loader)
    allow: tuple[str, ...]  # files to download for an id (fnmatch patterns on repo paths)
    ignore: tuple[str, ...] = ()


# diffusers pipelines: model_index.json, per-component configs / tokenizer files and safetensors
# weights; full-repo checkpoints at the top level (e.g. instruct-pix2pix-00-22000.ckpt, 7 GB), the
# unused safety checker and half-precision / EMA duplicates are skipped
_PIPELINE_ALLOW = ("model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors")
_PIPELINE_IGNORE = ("safety_checker/*", "*.fp16.*", "*.non_ema.*", "*.ema.*")

IP2P = ModelKind("Instruct-Pix2Pix pipeline (diffusers StableDiffusionInstructPix2PixPipeline)", "--editor-model",
                 "model_index.json", _PIPELINE_ALLOW, _PIPELINE_IGNORE)
SVD = ModelKind("multi-view prior pipeline (diffusers StableVideoDiffusionPipeline)", "--prior-model",
                "model_index.json", _PIPELINE_ALLOW, _PIPELINE_IGNORE)
CLIP = ModelKind("CLIP model (transformers CLIPModel + tokenizer + image processor)", "--clip-model",
                 "config.json", ("*.json", "*.txt", "*.safetensors"))
LPIPS_BACKBONE = ModelKind("LPIPS AlexNet backbone (torchvision alexnet weights, .pth or .safetensors)",
                           "--lpips-model", None, ("*.pth", "*.safetensors", "*.json"))

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?")


def _is_true(v: str | None) -> bool:
    return (v or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: never touch the network."""
    return _is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder as the environment says now (same rules as huggingface_hub)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def is_hub_id(ref) -> bool:
    """``org/name[@revision]`` that is not an existing path and does not start like one."""
    s = str(ref)
    if s.startswith(("/", ".", "~")) or Path(s).exists():
        return False
    return bool(_ID.fullmatch(s))


def fetch_command(repo_id: str, kind: ModelKind) -> str:
    """The shell command that puts ``repo_id`` (the files ``kind`` needs) into the cache."""
    repo, _, rev = repo_id.partition("@")
    parts = ["hf", "download", repo] + (["--revision", rev] if rev else [])
    for flag, patterns in (("--include", kind.allow), ("--exclude", kind.ignore)):
        for pat in patterns:  # the hf CLI takes one pattern per flag
            parts += [flag, pat]
    return " ".join(shlex.quote(p) for p in parts)


def _check_folder(path: Path, kind: ModelKind, ref) -> Path:
    if kind.marker and not (path / kind.marker).is_file():
        raise MissingModelError(f"{ref}: not a {kind.what} folder (no {kind.marker} in {path})")
    return path


def resolve_model(ref, kind: ModelKind) -> Path:
    """A local folder for ``ref`` (a folder or a Hugging Face id); see the module doc."""
    if ref is None or str(ref).strip() == "":
        raise MissingModelError(f"{kind.flag} is empty: pass a Hugging Face id (org/name) or a local {kind.what} folder")
    s = str(ref)
    if not is_hub_id(s):
        p = Path(s).expanduser()
        if not p.is_dir():
            raise MissingModelError(f"{p}: {kind.what} folder not found ({kind.flag} takes a local folder or a "
                                    "Hugging Face id such as org/name)")
        return _check_folder(p, kind, s)
    return _check_folder(_snapshot(s, kind), kind, s)


def _snapshot(repo_id: str, kind: ModelKind) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub comes with the diffusion extra
        raise MissingModelError(f"{kind.flag} {repo_id}: resolving Hugging Face ids needs huggingface_hub ({e}); "
                                "pip install 'styletalker[diffusion]' or pass a local folder") from None
    from .workdir import is_quiet

    repo, _, rev = repo_id.partition("@")
    cache = hub_cache_dir()
    offline = hub_offline()
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        was_disabled = are_progress_bars_disabled()
    except ImportError:  # pragma: no cover - older huggingface_hub
        was_disabled = None
    try:
        if was_disabled is not None and is_quiet():
            disable_progress_bars()
        path = snapshot_download(repo, revision=rev or None, cache_dir=str(cache), local_files_only=offline,
                                 allow_patterns=list(kind.allow), ignore_patterns=list(kind.ignore) or None)
    except Exception as e:  # not cached + offline / unreachable / unknown or gated repo / incomplete cache
        why = "HF_HUB_OFFLINE=1 and it is not in the cache" if offline else f"{type(e).__name__}: {_first_line(e)}"
        raise MissingModelError(
            f"{kind.flag} {repo_id}: cannot get this {kind.what} ({why}). Hugging Face cache: {cache}. "
            f"On a machine with internet run `{fetch_command(repo_id, kind)}` (with the same HF_HOME / HF_HUB_CACHE, "
            f"then copy that folder here), or pass a local folder to {kind.flag}."
        ) from None
    finally:
        if was_disabled is False and is_quiet():
            enable_progress_bars()
    return Path(path)


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:300] if s else ""
