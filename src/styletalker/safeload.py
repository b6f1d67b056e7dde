"""Reading files that may come from someone else: torn, truncated, garbage or hostile.

Every reader of a work-folder file (JSON, .npz, .pt, .ply, images) goes through this module, so
the rules live in one place:

* Nothing is unpickled: ``.pt`` files load with ``torch.load(weights_only=True)``, ``.npz`` with
  ``allow_pickle=False``.
* Memory is bounded by the file's size *before* anything is allocated: a count, shape or
  storage size claimed in a header is compared with the bytes that are really there (a .ply
  header claiming 10^12 vertices, an .npz member claiming a 100 GB array, a zip bomb).
* Whatever goes wrong while a file is read or interpreted becomes a :class:`DamagedFileError`
  (exit 2 from the CLI) naming the file and what to do, never a traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import DamagedFileError, MissingFileError, StyleTalkerError

MAX_JSON_BYTES = 64 << 20  # our JSON files are a few kB; a settings file is never this big
MAX_IMAGE_SIDE = 16384  # pixels: a width or height read from a file above this is refused
MAX_DEFLATE_RATIO = 200  # a compressed .npz member may hold at most this many times its stored size

# what reading or interpreting a damaged file can raise (programming errors are not in the list)
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError, RuntimeError,
               ArithmeticError, MemoryError, zipfile.BadZipFile, pickle.UnpicklingError, struct.error)


def _why(e: BaseException) -> str:
    msg = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def damaged(path, what: str, why: str, hint: str = "") -> DamagedFileError:
    """The error for an unusable file: ``PATH: damaged or unreadable WHAT (WHY); HINT``."""
    return DamagedFileError(f"{path}: damaged or unreadable {what} ({why})" + (f"; {hint}" if hint else ""))


@contextmanager
def reading(path, what: str = "file", hint: str = "") -> Iterator[None]:
    """Turn whatever reading / interpreting ``path`` raises into a :class:`DamagedFileError` naming it.

    Errors that are already plain user errors (:class:`StyleTalkerError`) pass through."""
    try:
        yield
    except StyleTalkerError:
        raise
    except READ_ERRORS as e:
        raise damaged(path, what, _why(e), hint) from None


def check(ok: bool, path, what: str, why: str, hint: str = "") -> None:
    """Raise :func:`damaged` unless ``ok`` (content checks: shapes, ranges, counts)."""
    if not ok:
        raise damaged(path, what, why, hint)


def file_size(path, what: str = "file", hint: str = "") -> int:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{p}: {what} not found" + (f"; {hint}" if hint else ""))
    return p.stat().st_size


def check_count(path, what: str, count: int, item_bytes: int, available: int, hint: str = "") -> None:
    """A header claims ``count`` items of ``item_bytes`` each: refuse it unless the ``available``
    bytes of the file can hold them (checked before anything is allocated)."""
    check(0 <= count and count * max(item_bytes, 1) <= available, path, what,
          f"the header claims {count} items of {item_bytes} bytes, the file holds {available} bytes", hint)


def load_json(path, what: str = "JSON file", hint: str = "") -> Any:
    """``json.load`` of a file of at most :data:`MAX_JSON_BYTES`; errors name the file."""
    n = file_size(path, what, hint)
    check(n <= MAX_JSON_BYTES, path, what, f"{n} bytes, more than a JSON file of StyleTalker can be", hint)
    with reading(path, what, hint):
        return json.loads(Path(path).read_bytes().decode("utf-8"))


def load_json_dict(path, what: str = "JSON file", hint: str = "") -> dict:
    """:func:`load_json` of a file that must hold an object."""
    d = load_json(path, what, hint)
    check(isinstance(d, dict), path, what, f"holds a {type(d).__name__}, not an object", hint)
    return d


def _zip_members(path, what: str, hint: str) -> list[zipfile.ZipInfo]:
    """The members of a zip file after a CRC check of all of them (torn or flipped bytes), with
    their sizes bounded by the file's size (no zip bombs)."""
    size = file_size(path, what, hint)
    with reading(path, what, hint):
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            for i in infos:
                stored = i.compress_type == zipfile.ZIP_STORED
                limit = i.compress_size * (1 if stored else MAX_DEFLATE_RATIO)
                check(i.file_size <= limit and i.compress_size <= size, path, what,
                      f"member {i.filename!r} claims {i.file_size} bytes", hint)
            bad = z.testzip()
            check(bad is None, path, what, f"member {bad!r} fails its CRC check", hint)
    return infos


def load_npz(path, what: str = ".npz file", hint: str = "") -> dict:
    """All arrays of an ``.npz`` (``allow_pickle=False``), each member's declared shape checked
    against the bytes it really holds before it is read."""
    import numpy as np
    from numpy.lib import format as npformat

    infos = _zip_members(path, what, hint)
    with reading(path, what, hint):
        with zipfile.ZipFile(path) as z:
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    version = npformat.read_magic(f)
                    shape, _, dtype = (npformat.read_array_header_1_0(f) if version == (1, 0)
                                       else npformat.read_array_header_2_0(f))
                    check(not dtype.hasobject, path, what, f"{info.filename}: object arrays are not read", hint)
                    count = int(np.prod(shape, dtype=object))
                    check_count(path, f"{what} ({info.filename})", count, dtype.itemsize, info.file_size, hint)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _torch_safe_globals() -> list:
    """Besides tensors, what our .pt files may hold: numpy arrays and scalars (data, no code;
    checkpoints of earlier versions stored numpy RNG states)."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover
        from numpy.core import multiarray
    types = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    return types + [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.float32, np.bool_)]


def load_torch(path, what: str = ".pt file", hint: str = "", map_location="cpu", legacy: bool = False) -> Any:
    """``torch.load(weights_only=True)`` of a zip-format ``.pt``: code in the file is refused,
    never run; every member is CRC-checked and bounded by the file's size. The old non-zip format
    (whose headers could claim any storage size) is refused unless ``legacy`` (model weights of
    installed packages, e.g. LPIPS' ``alex.pth``; never for work-folder files)."""
    import torch

    file_size(path, what, hint)
    with reading(path, what, hint):
        is_zip = zipfile.is_zipfile(path)
    check(is_zip or legacy, path, what, "not a zip-format PyTorch file", hint)
    if is_zip:
        _zip_members(path, what, hint)
    with reading(path, what, hint):
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)


def read_image(path, what: str = "image", hint: str = "", gray: bool = False):
    """An 8-bit image as a numpy array, (H, W, 3) RGB or (H, W) grey (OpenCV decoder: it refuses
    images of more than 2^30 pixels before allocating them)."""
    import cv2

    file_size(path, what, hint)
    with reading(path, what, hint):
        img = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        check(img is not None, path, what, "not a readable image", hint)
        return img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


__all__ = ["MAX_IMAGE_SIDE", "READ_ERRORS", "reading", "check", "check_count", "damaged", "file_size", "load_json", "load_json_dict",
           "load_npz", "load_torch", "read_image"]
