"""Export / import Gaussians in the standard 3DGS ``.ply`` layout (readable by 3DGS viewers).

Layout (one ``vertex`` element, binary little-endian float32 properties, in this order):
``x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 [f_rest_0 .. f_rest_{3K-1}] opacity scale_0..2 rot_0..3``

* colours are stored as the degree-0 spherical-harmonics coefficient: ``c = 0.5 + C0 * f_dc``,
  ``C0 = 0.28209479177387814``; higher SH bands (``f_rest``, channel-major as in 3DGS) are zeros
  on export (StyleTalker colours are view-independent) and returned as ``sh_rest`` on import;
* ``opacity`` is the logit of the opacity, ``scale_*`` the log of the linear scales,
  ``rot_*`` the quaternion (w, x, y, z), stored as given (3DGS normalises on load);
* normals are zeros.

    save_ply("avatar.ply", means, quats, scales, opacities, colors)
    g = load_ply("avatar.ply")   # {"means", "quats", "scales", "opacities", "colors", ["sh_rest"]}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..safeload import check, check_count, damaged, file_size, reading

SH_C0 = 0.28209479177387814

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _np(t, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    a = t.detach().cpu().double().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float64)
    if a.ndim != 1 + len(shape_tail) or tuple(a.shape[1:]) != shape_tail:
        raise ValueError(f"save_ply: {name} must have shape (N{''.join(', ' + str(s) for s in shape_tail)}), got {a.shape}")
    return a


def save_ply(path: str | os.PathLike, means, quats, scales, opacities, colors, sh_degree: int = 3) -> Path:
    """Write Gaussians (linear scales, opacities in [0,1], RGB colours) as a standard 3DGS .ply.

    ``sh_degree`` only sets how many zero ``f_rest`` coefficients are written (3 -> 45, what the
    reference 3DGS viewer expects; 0 -> none).
    """
    from ..workdir import atomic_path

    m = _np(means, "means", (3,))
    n = m.shape[0]
    q = _np(quats, "quats", (4,))
    s = _np(scales, "scales", (3,))
    o = (opacities.detach().cpu().double().numpy() if torch.is_tensor(opacities) else np.asarray(opacities, np.float64)).reshape(-1)
    c = _np(colors, "colors", (3,))
    for name, a in (("quats", q), ("scales", s), ("opacities", o), ("colors", c)):
        if a.shape[0] != n:
            raise ValueError(f"save_ply: {name} has {a.shape[0]} rows, means has {n}")
    if not 0 <= sh_degree <= 4:
        raise ValueError("save_ply: sh_degree must be in 0..4")
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    if np.any(s <= 0):
        raise ValueError("save_ply: scales must be positive (they are stored as logs)")
    eps = 1e-7
    op = np.clip(o, eps, 1 - eps)
    cols = [m, np.zeros((n, 3)), (c - 0.5) / SH_C0, np.zeros((n, n_rest)), np.log(op / (1 - op))[:, None], np.log(s), q]
    data = np.concatenate(cols, axis=1).astype("<f4")
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert data.shape[1] == len(names)
    header = "ply\nformat binary_little_endian 1.0\ncomment written by styletalker\n"
    header += f"element vertex {n}\n" + "".join(f"property float {nm}\n" for nm in names) + "end_header\n"
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(np.ascontiguousarray(data).tobytes())
    return path


MAX_HEADER_LINE = 1024  # bytes per .ply header line
MAX_HEADER_LINES = 4096


def _read_header(f, path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]]]:
    if f.readline(MAX_HEADER_LINE).strip() != b"ply":
        raise InputError(f"{path}: not a .ply file")
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for _ in range(MAX_HEADER_LINES):
        line = f.readline(MAX_HEADER_LINE)
        if not line:
            raise damaged(path, ".ply file", "truncated header")
        tok = line.decode("ascii", errors="replace").split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "end_header":
            break
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property":
            if not elements:
                raise InputError(f"{path}: property before element in .ply header")
            if tok[1] == "list":
                raise InputError(f"{path}: list properties are not supported (not a 3DGS .ply?)")
            if tok[1] not in _PLY_TYPES:
                raise InputError(f"{path}: unknown .ply property type {tok[1]!r}")
            elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]]))
    else:
        raise damaged(path, ".ply file", f"no end_header in the first {MAX_HEADER_LINES} lines")
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise InputError(f"{path}: unsupported .ply format {fmt!r}")
    return fmt, elements


def load_ply(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Read a 3DGS .ply into render-ready tensors.

    Returns ``means (N,3)``, ``quats (N,4)`` (wxyz, as stored), ``scales (N,3)`` (linear),
    ``opacities (N,)`` (in [0,1]), ``colors (N,3)`` (SH DC -> RGB, may exceed [0,1] as in 3DGS) and,
    if the file has ``f_rest_*``, ``sh_rest (N,K,3)`` (ignored by the renderer).
    A damaged file, or a header claiming more vertices than the file holds, is an InputError
    (checked before anything is allocated).
    """
    path = Path(path)
    size = file_size(path, ".ply file")
    with reading(path, ".ply file"):
        return _load_ply(path, size, dtype)


def _load_ply(path: Path, size: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        fmt, elements = _read_header(f, path)
        if not elements or elements[0][0] != "vertex":
            raise InputError(f"{path}: no 'vertex' element (not a 3DGS .ply)")
        _, n, props = elements[0]
        check(len({name for name, _ in props}) == len(props), path, ".ply file", "repeated property names")
        if fmt == "ascii":
            check_count(path, ".ply file", n, 2 * len(props), size - f.tell())  # >= "0 " per value
            rows = np.loadtxt(f, max_rows=n, ndmin=2) if n else np.zeros((0, len(props)))
            if rows.shape != (n, len(props)):
                raise InputError(f"{path}: expected {n} vertex rows with {len(props)} values")
            arr = {name: rows[:, i] for i, (name, _) in enumerate(props)}
        else:
            end = "<" if fmt == "binary_little_endian" else ">"
            dt = np.dtype([(name, end + t) for name, t in props])
            check_count(path, ".ply file (truncated?)", n, dt.itemsize, size - f.tell())
            raw = f.read(dt.itemsize * n)
            rec = np.frombuffer(raw, dtype=dt, count=n)
            arr = {name: rec[name] for name, _ in props}
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in need if k not in arr]
    if missing:
        raise InputError(f"{path}: not a 3DGS .ply, missing properties {', '.join(missing)}")

    def cols(*names):
        return torch.from_numpy(np.stack([np.asarray(arr[k], dtype=np.float64) for k in names], axis=1)).to(dtype)

    out = {
        "means": cols("x", "y", "z"),
        "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
        "scales": torch.exp(cols("scale_0", "scale_1", "scale_2")),
        "opacities": torch.sigmoid(cols("opacity")[:, 0]),
        "colors": 0.5 + SH_C0 * cols("f_dc_0", "f_dc_1", "f_dc_2"),
    }
    rest = sorted((k for k in arr if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))
    if rest:
        if len(rest) % 3:
            raise InputError(f"{path}: {len(rest)} f_rest properties is not a multiple of 3")
        k = len(rest) // 3
        out["sh_rest"] = cols(*rest).reshape(-1, 3, k).transpose(1, 2).contiguous()  # channel-major -> (N,K,3)
    return out


__all__ = ["save_ply", "load_ply", "SH_C0"]
