"""The jobs file of ``styletalker batch``: one row per video (CSV or YAML), read into :class:`JobRow`.

Every field of :class:`JobRow` is a CSV column / YAML key; an empty cell or a missing key takes the
field's default, and ``None`` there means "the stage's own default" (the same as leaving the option
out on the command line). Relative paths are taken relative to the jobs file's folder.

CSV: a header row naming the columns, then one row per video; ``prompts`` holds several prompts
separated by ``|`` (a prompt may itself contain commas, ``and``, ``with``).
YAML: a list of rows, or ``{"defaults": {...}, "jobs": [...]}`` where ``defaults`` fills what a row
leaves out; ``prompts`` is a list (or one string).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import InputError

PROMPT_SEPARATOR = "|"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
RESERVED_NAMES = ("summary.csv", "summary.json")  # written by the batch into OUT/


@dataclass(frozen=True)
class JobRow:
    """One video of a batch and what to make of it (docs/scale.md)."""

    name: str  # output folder OUT/<name>/ (default: the video's file name without extension)
    video: str
    start: float | None = None  # preprocess --start, seconds
    duration: float | None = None  # preprocess --duration, seconds
    fps: float | None = None  # preprocess --fps
    size: int | None = None  # preprocess --size, pixels
    preset: str = "auto"  # reconstruct --preset
    prompts: tuple[str, ...] = ()  # one edit each (built-in editor vocabulary: styletalker edit --list-prompts)
    driver: str | None = None  # animate --driver: the (edited) avatars are driven by this video
    driver_start: float | None = None  # animate --start
    driver_duration: float | None = None  # animate --duration
    edit_iters: int | None = None  # edit --iters
    orbit_frames: int | None = None  # render --orbit --frames

    def preprocess_options(self) -> dict:
        return _given(start=self.start, duration=self.duration, fps=self.fps, size=self.size)

    def animate_options(self) -> dict:
        return _given(start=self.driver_start, duration=self.driver_duration)

    def edit_options(self) -> dict:
        return _given(iters=self.edit_iters)

    def orbit_options(self) -> dict:
        return _given(frames=self.orbit_frames)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["prompts"] = list(self.prompts)
        return d


def _given(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def _number(kind, ok, what):
    def parse(v):
        try:
            x = kind(v)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {v!r}") from None
        if kind is int and isinstance(v, float) and v != x:
            raise ValueError(f"not a whole number: {v!r}")
        if not ok(x):
            raise ValueError(f"must be {what} (got {v!r})")
        return x

    return parse


def _path(v) -> str:
    return str(v)


def _prompts(v) -> tuple[str, ...]:
    items = v.split(PROMPT_SEPARATOR) if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected a list of prompts, got {v!r}")
    return tuple(str(p).strip() for p in items if str(p).strip())


def _preset(v) -> str:
    from ..reconstruct.config import PRESETS

    if v not in (*PRESETS, "auto"):
        raise ValueError(f"unknown preset {v!r}; choose from {', '.join(PRESETS)} or auto")
    return str(v)


_nonneg = _number(float, lambda x: x >= 0, ">= 0")
_pos = _number(float, lambda x: x > 0, "> 0")
_pos_int = _number(int, lambda x: x > 0, "a whole number > 0")
_orbit_frames = _number(int, lambda x: x >= 2, "a whole number >= 2")
PARSERS = {"name": str, "video": _path, "start": _nonneg, "duration": _pos, "fps": _pos, "size": _pos_int,
           "preset": _preset, "prompts": _prompts, "driver": _path, "driver_start": _nonneg,
           "driver_duration": _pos, "edit_iters": _pos_int, "orbit_frames": _orbit_frames}
assert set(PARSERS) == {f.name for f in fields(JobRow)}


def load_jobs(path: str | Path) -> list[JobRow]:
    """Read and check a jobs file; raise :class:`InputError` naming the file, row and field of any
    problem (before anything runs)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: jobs file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = _read_csv(path)
    elif suffix in (".yaml", ".yml"):
        raw = _read_yaml(path)
    else:
        raise InputError(f"{path}: a jobs file is .csv, .yaml or .yml")
    if not raw:
        raise InputError(f"{path}: no rows")
    rows = [_row(path, i, r) for i, r in enumerate(raw, start=1)]
    seen: dict[str, int] = {}
    for i, r in enumerate(rows, start=1):
        if r.name in seen:
            raise InputError(f"{path}: row {i}: name {r.name!r} is already used by row {seen[r.name]}; "
                             "give each row its own name")
        seen[r.name] = i
    return rows


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    return [{k: v for k, v in r.items() if v != ""} for r in rows if any(r.values())]


def _read_yaml(path: Path) -> list[dict]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({e})") from None
    defaults: dict = {}
    if isinstance(doc, dict):
        unknown = set(doc) - {"defaults", "jobs"}
        if unknown:
            raise InputError(f"{path}: unknown top-level keys {sorted(unknown)}; expected 'defaults' and 'jobs'")
        defaults, doc = doc.get("defaults") or {}, doc.get("jobs")
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc) or not isinstance(defaults, dict):
        raise InputError(f"{path}: expected a list of rows (mappings), or 'defaults' and 'jobs'")
    return [{**defaults, **{k: v for k, v in r.items() if v is not None}} for r in doc]


def _row(path: Path, i: int, raw: dict[str, Any]) -> JobRow:
    where = f"{path}: row {i}"
    unknown = sorted(set(raw) - set(PARSERS))
    if unknown:
        raise InputError(f"{where}: unknown column(s) {unknown}; known: {', '.join(PARSERS)}")
    if not raw.get("video"):
        raise InputError(f"{where}: 'video' is required")
    values = {}
    for k, v in raw.items():
        try:
            values[k] = PARSERS[k](v)
        except ValueError as e:
            raise InputError(f"{where}: {k}: {e}") from None
    for k in ("video", "driver"):
        if k in values and not Path(values[k]).is_absolute():
            values[k] = str(path.parent / values[k])
    values.setdefault("name", Path(values["video"]).stem)
    row = JobRow(**values)
    if not re.fullmatch(NAME_PATTERN, row.name):
        raise InputError(f"{where}: name {row.name!r}: use letters, digits, '-', '_' and '.' only")
    if row.name in RESERVED_NAMES:
        raise InputError(f"{where}: name {row.name!r} is taken by the batch's own summary; choose another")
    _check_prompts(where, row)
    return row


def _check_prompts(where: str, row: JobRow) -> None:
    """Prompts the built-in editor cannot do, or two prompts with one edit name, fail now rather
    than after the reconstruction."""
    from ..edit.builtin import parse_prompt
    from ..edit.loop import slugify

    names: dict[str, str] = {}
    for p in row.prompts:
        try:
            parse_prompt(p)
        except InputError as e:
            raise InputError(f"{where}: prompt {p!r}: {e}") from None
        n = slugify(p)
        if n in names:
            raise InputError(f"{where}: prompts {names[n]!r} and {p!r} give the same edit name {n!r}")
        names[n] = p

