"""2D image editors used by the edit loop (paper Sec. 3.3: "pass the input image and the instruction
through Instruct-Pix2Pix to generate an edited image C_edit").

Interface::

    editor = get_editor("builtin")                  # or get_editor("ip2p", model_path=ID_OR_PATH)
    editor.check_prompt(prompt)                     # raises InputError early for bad prompts
    edited = editor.edit(render, original, prompt, b, face, seed=0)

``render`` is the current avatar render of a training view and ``original`` the training image
of that view, both float32 (H, W, 3) in [0, 1]; ``b`` is the edit strength (any real number,
sampled per iteration by the edit loop, see :func:`styletalker.edit.weighting.sample_b`);
``face`` is a :class:`~styletalker.edit.regions.FaceInfo` (2D landmarks + person mask of the
view). The result is float32 (H, W, 3) in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError
from .options import EDITOR_NAMES
from .regions import FaceInfo


class Editor:
    """Base class of 2D editors."""

    name = "editor"
    needs_render = True  # False: ``edit`` ignores ``render`` (the loop then skips rendering it)

    def check_prompt(self, prompt: str) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the edit prompt is empty; pass --prompt \"...\"")

    def edit(self, render: np.ndarray, original: np.ndarray, prompt: str, b: float, face: FaceInfo,
             seed: int | None = None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"editor": self.name}


def _make_builtin(**kw) -> Editor:
    from .builtin import BuiltinEditor

    return BuiltinEditor()


def _make_ip2p(model_path=None, **kw) -> Editor:
    from .ip2p import InstructPix2PixEditor

    return InstructPix2PixEditor(model_path, **kw)


EDITORS: dict[str, Callable[..., Editor]] = dict(zip(EDITOR_NAMES, (_make_builtin, _make_ip2p)))


def get_editor(name: str = "builtin", model_path=None, **kw) -> Editor:
    """Create an editor by registry name: "builtin" (default) or "ip2p", whose ``model_path`` is a
    Hugging Face id or local folder (default :data:`styletalker.hub.DEFAULT_EDITOR_MODEL`) and which
    takes ``device=`` / ``dtype=``."""
    if name not in EDITORS:
        raise InputError(f"unknown editor {name!r}; choose from: {', '.join(sorted(EDITORS))}")
    if name == "builtin":
        if model_path:
            raise InputError("--editor-model is only used with --editor ip2p")
        return EDITORS[name](**kw)
    return EDITORS[name](model_path=model_path, **kw)


def as_float_image(img) -> np.ndarray:
    """uint8 / float / torch (H, W, 3) -> float32 numpy in [0, 1]."""
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)
