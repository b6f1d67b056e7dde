"""The viewer's expression controls: the 52 blendshape channels grouped by face region, and presets.

A preset starts from the avatar's neutral expression (its neutral training frame) and sets its
channels to the largest value the avatar was trained on (``expr_max``, docs/FORMATS.md
"avatar.pt"; 1 for avatars stored without a range): the most the avatar can show, since it clamps
its input to the trained range.
"""

from __future__ import annotations

import numpy as np

# (folder, name prefixes); channels matching none of them go to "Other"
GROUPS = (("Jaw", ("jaw",)), ("Mouth", ("mouth",)), ("Eyes", ("eye",)), ("Brows", ("brow",)),
          ("Cheeks and nose", ("cheek", "nose")))
OTHER = "Other"

PRESETS = {
    "neutral": (),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "open mouth": ("jawOpen",),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
}


def grouped(names) -> dict[str, list[tuple[int, str]]]:
    """Channel (index, name) lists per folder, in :data:`GROUPS` order, then "Other"."""
    out: dict[str, list[tuple[int, str]]] = {g: [] for g, _ in GROUPS}
    out[OTHER] = []
    for i, n in enumerate(names):
        group = next((g for g, prefixes in GROUPS if n.startswith(prefixes)), OTHER)
        out[group].append((i, n))
    return {g: v for g, v in out.items() if v}


def preset_expression(preset: str, neutral, names, maximum=None) -> np.ndarray:
    """The expression of ``preset``: ``neutral`` with the preset's channels at ``maximum``."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    e = np.array(neutral, np.float32, copy=True)
    top = np.ones_like(e) if maximum is None else np.asarray(maximum, np.float32)
    for n in PRESETS[preset]:
        if n in names:
            e[list(names).index(n)] = top[list(names).index(n)]
    return e
