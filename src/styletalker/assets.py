"""Locate sample data and bundled model files fetched by ``scripts/fetch_data.sh``.

Search order for a data root: ``$STYLETALKER_DATA``, the repository's ``data/`` folder (editable
install / source checkout), ``~/.cache/styletalker``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingModelError

FETCH_HINT = "run `make data` (scripts/fetch_data.sh) to fetch it"


def data_roots() -> list[Path]:
    roots = []
    if os.environ.get("STYLETALKER_DATA"):
        roots.append(Path(os.environ["STYLETALKER_DATA"]))
    roots.append(Path(__file__).resolve().parents[2] / "data")
    roots.append(Path.home() / ".cache" / "styletalker")
    return roots


def find_asset(relpath: str, override: str | os.PathLike | None = None) -> Path:
    """Return an existing asset path or raise a clear error saying how to get it."""
    if override:
        p = Path(override)
        if not p.is_file():
            raise MissingModelError(f"{p}: file not found")
        return p
    for root in data_roots():
        p = root / relpath
        if p.is_file():
            return p
    looked = ", ".join(str(r / relpath) for r in data_roots())
    raise MissingModelError(f"{relpath} not found (looked in {looked}); {FETCH_HINT}")


def face_landmarker_path(override=None) -> Path:
    return find_asset("models/face_landmarker.task", override)


def sample_video(name: str = "franck.webm") -> Path:
    return find_asset(f"videos/{name}")
