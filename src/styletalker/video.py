"""Video decoding / encoding with PyAV, with clear errors for unusable files."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import InputError


@dataclass
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    duration: float | None  # seconds, None when the container does not say
    frames: int | None  # estimated frame count, None when unknown
    rotation: int = 0  # degrees counter-clockwise applied to show the frames upright (phone videos)


def _open(path: str | os.PathLike):
    import av

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a video file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    try:
        container = av.open(str(p))
    except Exception as e:  # av.error.* (InvalidDataError, ...) -- all mean "not a readable video"
        raise InputError(f"{p}: not a readable video file ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{p}: contains no video stream")
    return container


def _upright_turns(frame) -> int:
    """Quarter turns counter-clockwise that show ``frame`` upright, from its display matrix (phone
    videos are stored sideways with a rotation flag; ffmpeg's player and CLI rotate the same way)."""
    try:
        r = float(getattr(frame, "rotation", 0) or 0)
    except Exception:  # no/odd display matrix
        return 0
    return int(round(r / 90.0)) % 4 if math.isfinite(r) else 0


def _first_frame_turns(container, stream) -> int:
    try:
        for frame in container.decode(stream):
            return _upright_turns(frame)
    except Exception:  # unreadable first frame: reported when the frames are decoded
        pass
    return 0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size (as displayed, i.e. after the rotation flag), frame rate, duration of a video."""
    c = _open(path)
    try:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or Fraction(25)
        fps = float(rate)
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif c.duration is not None:
            duration = c.duration / 1_000_000
        frames = s.frames or (int(round(duration * fps)) if duration else None)
        w, h = s.codec_context.width, s.codec_context.height
        turns = _first_frame_turns(c, s)
        if turns % 2:
            w, h = h, w
        return VideoInfo(str(path), w, h, fps, duration, frames or None, rotation=90 * turns)
    finally:
        c.close()


def iter_frames(
    path: str | os.PathLike,
    *,
    start: float = 0.0,
    duration: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, time_s, rgb_uint8[H,W,3])`` for decoded frames, turned upright when the
    video carries a rotation flag (display matrix), as players show them.

    ``start``/``duration`` select a time window (seconds); ``fps`` subsamples to at most
    that rate; ``max_frames`` stops early. ``index`` counts decoded source frames.
    Decoding errors in the middle of a file raise :class:`InputError`.
    """
    c = _open(path)
    try:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        src_fps = float(s.average_rate or s.guessed_rate or 25)
        step = 1.0 / fps if fps else 0.0
        next_t = start
        n_out = 0
        idx = -1
        try:
            for frame in c.decode(s):
                idx += 1
                t = float(frame.pts * s.time_base) if frame.pts is not None else idx / src_fps
                if t + 1e-6 < start:
                    continue
                if duration is not None and t >= start + duration - 1e-6:
                    break
                if fps and t + 1e-6 < next_t:
                    continue
                if fps:  # next slot on the start + k/fps grid after t (also when pts jump ahead)
                    next_t += step
                    if next_t <= t + 1e-6:
                        next_t += step * (int((t + 1e-6 - next_t) / step) + 1)
                img = frame.to_ndarray(format="rgb24")
                turns = _upright_turns(frame)
                yield idx, t, np.ascontiguousarray(np.rot90(img, turns) if turns else img)
                n_out += 1
                if max_frames is not None and n_out >= max_frames:
                    break
        except InputError:
            raise
        except Exception as e:  # corrupt stream
            import av

            if isinstance(e, (av.error.FFmpegError, ValueError)):
                raise InputError(f"{path}: video is corrupt after frame {idx} ({e})") from None
            raise
    finally:
        c.close()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *, crf: int = 20) -> int:
    """Encode RGB uint8 frames to H.264 MP4 (yuv420p). Odd sizes are padded by one pixel.

    Writes to a temporary file and renames on success, so a crash never leaves a truncated
    video under ``path``. Returns the number of frames written.
    """
    import av

    from .workdir import atomic_path, to_uint8

    path = Path(path)
    n = 0
    with atomic_path(path) as tmp:
        c = av.open(str(tmp), mode="w")
        try:
            stream = None
            for img in frames:
                img = np.asarray(img)
                if img.dtype != np.uint8:
                    img = to_uint8(img) if img.dtype.kind == "f" else img.astype(np.uint8)
                h, w = img.shape[:2]
                ph, pw = h + (h % 2), w + (w % 2)
                if (ph, pw) != (h, w):
                    img = np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
                if stream is None:
                    stream = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                    stream.width, stream.height = pw, ph
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                for packet in stream.encode(frame):
                    c.mux(packet)
                n += 1
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                c.mux(packet)
        finally:
            c.close()
    return n
