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
