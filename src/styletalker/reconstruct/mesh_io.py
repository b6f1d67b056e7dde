"""Wavefront .obj read/write (vertices, optional per-vertex RGB as ``v x y z r g b``, triangles)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import InputError


def write_obj(path, verts, faces, colors=None, header: str | None = None) -> None:
    from ..workdir import atomic_write_bytes

    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    buf = io.StringIO()
    if header:
        for line in header.splitlines():
            buf.write(f"# {line}\n")
    if colors is not None:
        c = np.clip(np.asarray(colors, dtype=np.float64), 0, 1)
        np.savetxt(buf, np.concatenate([v, c], 1), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    else:
        np.savetxt(buf, v, fmt="v %.6f %.6f %.6f")
    np.savetxt(buf, f + 1, fmt="f %d %d %d")
    atomic_write_bytes(path, buf.getvalue().encode())


def read_obj(path):
    """Returns (verts (V,3), faces (F,3) zero-based, colors (V,3) or None). Polygons are fanned."""
    from ..safeload import file_size, reading

    path = Path(path)
    file_size(path, "mesh file")
    with reading(path, "mesh file"):
        return _read_obj(path)


def _read_obj(path: Path):
    verts, cols, faces = [], [], []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                vals = [float(x) for x in parts[1:]]
                verts.append(vals[:3])
                if len(vals) >= 6:
                    cols.append(vals[3:6])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                for k in range(1, len(idx) - 1):
                    faces.append([idx[0], idx[k], idx[k + 1]])
    v = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"{path}: face index out of range")
    c = np.asarray(cols, dtype=np.float64) if len(cols) == len(verts) and cols else None
    return v, f, c
