"""Expression retargeting: another person's blendshapes onto the avatar.

Two people use the 52 blendshape channels differently: one person's face at rest already scores
0.2 on ``browInnerUp``, another's mouth never opens past ``jawOpen`` 0.3, a third blinks to 0.9.
Fed raw, a driver's coefficients land outside what the avatar was trained on, where its networks
were never fitted. Every channel is mapped from the driver's own range onto the avatar's:

    out_c = src_low_c + gain * ratio_c * (d_c - drv_low_c),   ratio_c = (src_high_c - src_low_c) / (drv_high_c - drv_low_c)

``low`` / ``high`` are the 5th / 95th percentiles of a channel over a clip (the driver's whole clip;
the avatar's training frames, stored in the avatar). A channel the driver hardly moves
(``drv_high - drv_low < min_range``) is shifted, not stretched (``ratio = 1``), so tracker noise is
not amplified. Modes (``mode``, ``styletalker animate --retarget``):

* ``auto`` (the default): ``ratio_c`` is never below 1. A driver who moves a channel less than the
  avatar's clip did is stretched onto the avatar's range (a calm driver's smile becomes the
  avatar's smile); one who moves it more keeps the size of the motion (a driver's ``jawOpen`` of 0.5
  asks for a mouth that wide, where ``range`` maps it onto a talking clip's 0.02-0.15, a few
  pixels). The result is clipped to [0, 1]; the avatar then clamps what its MLPs see to the trained
  range, and its linear expression basis (when it has one) moves the face on past that range, a
  bounded way (``GaussianAvatar.basis_input``). Measured in docs/animate.md: as good as or better
  than ``range`` for every avatar and driver there.
* ``range``: ``ratio_c`` as it comes, the result clamped to the avatar's trained range
  ``[expr_min, expr_max]`` (the default before).
* ``raw``: the driver's coefficients unchanged (the avatar still clamps them when it was built to).

An avatar saved without its training range (format 1, outside a work folder) is driven raw.
``gain`` > 1 exaggerates, < 1 damps the motion around the rest pose (``auto`` and ``range``).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

from .animate_options import RETARGET_MODES  # noqa: F401  (re-exported)
MIN_RANGE = 0.1


def clip_range(expression: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel 5th and 95th percentiles of a clip's expressions (T,E)."""
    e = np.asarray(expression, np.float64)
    return np.percentile(e, 5, axis=0), np.percentile(e, 95, axis=0)


def avatar_range(avatar) -> dict | None:
    """The avatar's stored training range (``None`` for avatars saved without one)."""
    if not avatar.config.get("expression_range"):
        return None
    return {k: getattr(avatar, f"expr_{k}").detach().cpu().numpy().astype(np.float64)
            for k in ("min", "low", "neutral", "high", "max")}


def check_options(mode: str, gain: float) -> None:
    if mode not in RETARGET_MODES:
        raise InputError(f"unknown --retarget {mode!r}; choose from {', '.join(RETARGET_MODES)}")
    if not gain > 0:
        raise InputError("--expression-gain must be positive")


def retarget_expressions(driver: np.ndarray, source: dict | None, mode: str = "auto", gain: float = 1.0,
                         driver_range: tuple[np.ndarray, np.ndarray] | None = None,
                         min_range: float = MIN_RANGE) -> np.ndarray:
    """Map driver expressions (T,E) onto the avatar's range ``source`` (:func:`avatar_range`) by ``mode``.

    ``driver_range``: the driver's (low, high) per channel; default: from ``driver`` itself
    (a live source passes the range seen so far).
    """
    check_options(mode, gain)
    d = np.asarray(driver, np.float64)
    if mode == "raw" or source is None:  # an avatar saved without its range can only be driven raw
        return d.astype(np.float32)
    lo_d, hi_d = clip_range(d) if driver_range is None else (np.asarray(driver_range[0]), np.asarray(driver_range[1]))
    span_d = hi_d - lo_d
    ratio = np.where(span_d >= min_range, (source["high"] - source["low"]) / np.maximum(span_d, 1e-6), 1.0)
    if mode == "auto":  # never shrink the driver's motion; the avatar bounds it (module doc)
        ratio = np.maximum(ratio, 1.0)
    out = source["low"] + gain * ratio * (d - lo_d)
    lo, hi = (0.0, 1.0) if mode == "auto" else (source["min"], source["max"])
    return np.clip(out, lo, hi).astype(np.float32)
