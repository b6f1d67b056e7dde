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


def add_device_argument(p) -> None:
    """``--device auto|cpu|cuda``, the same for every stage (resolved by ``styletalker.device``)."""
    from ..device import DEFAULT_DEVICE, DEVICES

    p.add_argument("--device", default=DEFAULT_DEVICE, choices=list(DEVICES),
                   help=f"where torch runs: cuda (Gaussians through gsplat, diffusion models in float16), "
                        f"cpu, or auto = cuda when a GPU is available (default {DEFAULT_DEVICE})")
