"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse


def _number(kind, s: str, ok, what: str):
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"must be {what} (got {s})")
    return v


def positive_int(s: str) -> int:
    return _number(int, s, lambda v: v > 0, "> 0")


def positive_float(s: str) -> float:
    return _number(float, s, lambda v: v > 0, "> 0")


def nonneg_float(s: str) -> float:
    return _number(float, s, lambda v: v >= 0, ">= 0")


def add_clip_window(p, d, what: str = "") -> None:
    """``--start --duration --max-frames --fps``: the part of a video a command reads, the same for
    every command that reads one. ``d``: its options object (defaults of those four fields);
    ``what``: the video's role in the help text (e.g. "driver")."""
    w = f"{what} " if what else ""
    p.add_argument("--start", type=float, default=d.start, metavar="S",
                   help=f"{w}start time in seconds (default %(default)g)")
    p.add_argument("--duration", type=positive_float, default=d.duration, metavar="D",
                   help=f"{w}seconds to use (default: to the end)")
    p.add_argument("--max-frames", type=positive_int, default=d.max_frames, metavar="N",
                   help=f"use at most N {w}frames (default: no limit)")
    p.add_argument("--fps", type=positive_float, default=d.fps, metavar="F",
                   help=f"subsample the {w or 'video '}to at most F frames/s (default: all frames)")


def add_device_argument(p) -> None:
    """``--device auto|cpu|cuda``, the same for every stage (resolved by ``styletalker.device``)."""
    from ..device import DEFAULT_DEVICE, DEVICES

    p.add_argument("--device", default=DEFAULT_DEVICE, choices=list(DEVICES),
                   help=f"where torch runs: cuda (Gaussians through gsplat, diffusion models in float16), "
                        f"cpu, or auto = cuda when a GPU is available (default {DEFAULT_DEVICE})")
