"""Work-folder helpers shared by every stage.

Conventions (see docs/FORMATS.md):

* Each stage owns one sub-folder of the work folder (``preprocess/``, ``reconstruct/``, ...).
* A stage is *complete* only when ``<stage>/stage.json`` exists with ``"complete": true``.
  It is written last, atomically, so an interrupted run is never mistaken for a finished one.
* Files are written atomically (temporary name + ``os.replace``).
* Long-running stages keep checkpoints inside their folder and resume from them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DiskFullError, StyleTalkerError

STAGE_FILE = "stage.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _disk_full(e: BaseException, path: Path) -> DiskFullError | None:
    """The user-facing error for a write of ``path`` that failed for lack of space, else None."""
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
        return DiskFullError(f"cannot write {path}: {os.strerror(e.errno)} (the disk is full or the file is too large); "
                             f"the previous {path.name}, if any, is unchanged: free some space and run the same "
                             "command again")
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it onto ``path``: a
    reader sees the old file or the new one, never a part. A full disk raises DiskFullError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates the file 0600; give it the permissions any new file would have
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        full = _disk_full(e, path)
        if full is not None:
            raise full from None
        raise


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through :func:`atomic_write_bytes` (torch's own file writer reports a full
    disk as an opaque RuntimeError)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """``np.savez`` (uncompressed) through :func:`atomic_write_bytes`."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def to_uint8(img):
    """An image as uint8: uint8 arrays as they are, anything else read as [0, 1] (clipped, rounded)."""
    import numpy as np

    a = np.asarray(img)
    return a if a.dtype == np.uint8 else (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def encode_image(img, ext: str = ".png") -> bytes:
    """``.png`` (or ``.jpg``) encoding of an (H, W) grey or (H, W, 3) RGB image: uint8, or float
    in [0, 1] (numpy array or torch tensor; clipped and rounded)."""
    import cv2
    import numpy as np

    a = to_uint8(img.detach().cpu().numpy() if hasattr(img, "detach") else img)
    if a.ndim == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if ext.lower() == ".png" else []
    ok, buf = cv2.imencode(ext, a, params)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"{ext} encoding failed")
    return buf.tobytes()


def write_image(path: str | os.PathLike, img) -> Path:
    """Atomically write ``img`` (see :func:`encode_image`) in the format of the path's suffix."""
    path = Path(path)
    atomic_write_bytes(path, encode_image(img, path.suffix or ".png"))
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is moved onto ``path``.

    Use for writers that need a file name (torch.save, np.savez, video encoders).
    The temporary keeps the real suffix so libraries that look at it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        full = _disk_full(e, path)
        if full is not None:
            raise full from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path: str | os.PathLike) -> Any:
    """A work-folder JSON file; a missing, damaged or oversized one is an InputError naming it."""
    from .safeload import load_json

    return load_json(path)


def is_complete(folder: str | os.PathLike) -> bool:
    p = Path(folder) / STAGE_FILE
    if not p.is_file():
        return False
    try:
        return bool(read_json(p).get("complete"))
    except (StyleTalkerError, AttributeError):  # torn, damaged or not an object: not complete
        return False


def mark_complete(folder: str | os.PathLike, **info: Any) -> None:
    info = dict(info)
    info.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
    info["complete"] = True
    atomic_write_json(Path(folder) / STAGE_FILE, info)


def clear_complete(folder: str | os.PathLike) -> None:
    p = Path(folder) / STAGE_FILE
    if p.exists():
        p.unlink()


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished staging folder ``src`` onto ``dst`` (removing an old ``dst``)."""
    if dst.exists():
        old = dst.with_name(dst.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """True under ``styletalker --quiet`` (no progress bars or log lines)."""
    return _QUIET


def progress(iterable: Iterable | None = None, **kw: Any):
    """A tqdm progress bar on stderr, silenced by ``styletalker --quiet``."""
    from tqdm.auto import tqdm

    kw.setdefault("disable", _QUIET)
    kw.setdefault("file", sys.stderr)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kw)


def log(msg: str) -> None:
    if not _QUIET:
        print(msg, file=sys.stderr, flush=True)
