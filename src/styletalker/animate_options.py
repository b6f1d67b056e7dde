"""The options of ``styletalker animate`` and ``styletalker render`` (:class:`DriveOptions`,
:class:`OrbitOptions`, :class:`ViewOptions`) and their choices: one place for their defaults, read
by :mod:`styletalker.animate`, :mod:`styletalker.live` and the command line
(``commands/animate.py``, ``commands/render.py``). No heavy imports, so ``styletalker --help``
stays fast."""

from __future__ import annotations

from dataclasses import dataclass

POSE_MODES = ("relative", "rotation", "none")  # head motion taken from the driver
# expressions (styletalker.retarget): auto = onto the avatar's range, never shrinking the driver's
# motion; range = onto the avatar's range, clamped to it; raw = as tracked
RETARGET_MODES = ("auto", "range", "raw")
ORBIT_MODES = ("swing", "turn")  # seamless back-and-forth loop, or one sweep left to right
ORBIT_DEGREES = 90.0  # default orbit sweep: -45..+45 degrees


@dataclass(frozen=True)
class DriveOptions:
    """``styletalker animate``: how the driver drives the avatar."""

    start: float = 0.0  # driver start time, seconds
    duration: float | None = None  # driver seconds to use (None: to the end)
    max_frames: int | None = None  # use at most this many driver frames
    fps: float | None = None  # subsample the driver to at most this many frames/s (None: all)
    pose: str = "relative"  # one of POSE_MODES
    retarget: str = "auto"  # one of RETARGET_MODES
    expression_gain: float = 1.0  # >1 exaggerates, <1 damps the driver's expressions (retarget auto / range)
    side_by_side: bool = False  # the driver's face crop left of the avatar
    scale: float = 1.0  # render at scale x the avatar's image size


@dataclass(frozen=True)
class OrbitOptions:
    """``styletalker render --orbit``: a video turning the head."""

    frames: int = 60
    degrees: float | None = None  # sweep (None: ORBIT_DEGREES)
    fps: float = 25.0
    mode: str = "swing"  # one of ORBIT_MODES
    scale: float = 1.0


@dataclass(frozen=True)
class ViewOptions:
    """``styletalker render``: one image."""

    frame: int | None = None  # pose and expression of this preprocessed frame (None: reference view)
    yaw: float = 0.0  # turn the head by this many degrees
    scale: float = 1.0
