"""The options of ``styletalker preprocess`` (:class:`TrackOptions`): one place for their defaults,
read by the pipeline and by the command line (``commands/preprocess.py``). No heavy imports, so
``styletalker --help`` stays fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass

FOV_Y_DEG = 63.0  # vertical field of view of a phone / webcam video, degrees
DEFAULT_MIN_FRAMES = 8
DEFAULT_MAX_LOST = 0.5  # fraction of decoded frames without a usable face before we give up
DEFAULT_MAX_MULTI = 0.2  # fraction of frames with several faces before we give up
DEFAULT_SMOOTH_S = 0.04  # pose smoothing sigma, seconds


@dataclass
class TrackOptions:
    start: float = 0.0  # seconds into the video
    duration: float | None = None  # seconds to use (None: to the end)
    fps: float | None = None  # subsample to at most this many frames/s (None: all)
    max_frames: int | None = None  # stop after this many decoded frames
    size: int = 256  # side of the square head crop, pixels
    min_frames: int = DEFAULT_MIN_FRAMES
    max_lost: float = DEFAULT_MAX_LOST
    max_multi: float = DEFAULT_MAX_MULTI
    smooth: float = DEFAULT_SMOOTH_S
    refine: bool = True
    crop_scale: float = 1.0
    fov: float = FOV_Y_DEG  # vertical field of view of the full source frame, degrees
    hands: bool = True  # hands in front of the face: found, written to occluders/, left out (preprocess/hands.py)

    def to_json(self) -> dict:
        return asdict(self)

    def window_text(self) -> str:
        parts = [f"start={self.start:g}s"]
        if self.duration is not None:
            parts.append(f"duration={self.duration:g}s")
        if self.fps:
            parts.append(f"fps={self.fps:g}")
        if self.max_frames:
            parts.append(f"max_frames={self.max_frames}")
        return ", ".join(parts)
