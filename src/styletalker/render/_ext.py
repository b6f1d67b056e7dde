"""Build / load the C++ CPU rasterizer (``csrc/raster_cpu.cpp``: Gaussians; ``csrc/mesh_cpu.cpp``: the
visibility pass of the DMTet stage's triangle rasterizer) with torch's JIT extension loader.

The extension is compiled once per machine (about a minute; ``make setup`` does it) and cached by
:func:`torch.utils.cpp_extension.load` under ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions/py311_cpu/<name>/``). The cache key includes the source text and the
compiler flags, so editing the .cpp rebuilds it. ``STYLETALKER_RENDER_NO_EXT=1`` disables the
extension (the pure-PyTorch backend is used instead).

One process builds at a time: torch's loader marks a build in progress with a ``lock`` file in the
build folder and waits, forever, while that file exists, so a build killed half-way (Ctrl-C during
the first minute) left every later render hanging. :func:`load_extension` therefore builds under
an operating-system lock of its own (``fcntl.flock`` on ``<build folder>.styletalker-lock``), which
the kernel releases when its holder dies; holding it, a ``lock`` file left in the build folder can
only be a dead build's, and is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

import torch

SOURCES = [Path(__file__).parent / "csrc" / name for name in ("raster_cpu.cpp", "mesh_cpu.cpp")]
_lock = threading.Lock()
_state: dict = {}


def _isa_flags() -> tuple[str, list[str]]:
    """Instruction-set flags for this CPU; the ISA is part of the extension name (and cache key)."""
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        try:
            cap = torch.backends.cpu.get_cpu_capability()
        except Exception:  # pragma: no cover - very old torch
            cap = "DEFAULT"
        if cap in ("AVX2", "AVX512"):
            return "avx2", ["-mavx2", "-mfma"]
    return "generic", []


def extension_name() -> str:
    isa, _ = _isa_flags()
    return f"styletalker_raster_cpu_{isa}"


def _ensure_tools_on_path() -> None:
    """torch's JIT loader runs ``ninja``; make the venv's (PyPI ``ninja``) copy findable even when the
    venv is not activated."""
    extra = [str(Path(sys.executable).parent)]
    try:
        import ninja  # type: ignore

        extra.insert(0, str(Path(ninja.BIN_DIR)))
    except Exception:
        pass
    path = os.environ.get("PATH", "")
    parts = path.split(os.pathsep) if path else []
    for d in reversed(extra):
        if d not in parts:
            parts.insert(0, d)
    os.environ["PATH"] = os.pathsep.join(parts)


def load_extension(verbose: bool = False):
    """Return the compiled module, building it if needed. Raises on failure."""
    from torch.utils.cpp_extension import load

    _ensure_tools_on_path()
    if shutil.which("ninja") is None:
        raise RuntimeError("ninja is not installed (pip install ninja)")
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler found ({cxx!r} is not on PATH; install g++ or set CXX)")
    isa, flags = _isa_flags()
    cflags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-pthread"] + flags
    with _build_lock(extension_name()):
        return load(
            name=extension_name(),
            sources=[str(p) for p in SOURCES],
            extra_cflags=cflags,
            extra_ldflags=["-pthread"],
            verbose=verbose,
        )


@contextlib.contextmanager
def _build_lock(name: str):
    """Hold the build lock of extension ``name`` (module doc); clear a dead build's ``lock`` file."""
    try:
        import fcntl

        from torch.utils.cpp_extension import _get_build_directory
    except ImportError:  # not POSIX, or a torch without the helper: torch's own lock only
        yield
        return
    folder = Path(_get_build_directory(name, verbose=False))
    with open(folder.parent / f"{folder.name}.styletalker-lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # waits while another process builds; released if it dies
        try:
            (folder / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def get_extension():
    """The compiled module, or None (with a one-time warning) if it cannot be built/loaded."""
    if "mod" in _state:
        return _state["mod"]
    with _lock:
        if "mod" in _state:
            return _state["mod"]
        mod = None
        if os.environ.get("STYLETALKER_RENDER_NO_EXT", "") not in ("", "0"):
            _state["error"] = "disabled by STYLETALKER_RENDER_NO_EXT"
        else:
            try:
                mod = load_extension(verbose=os.environ.get("STYLETALKER_RENDER_VERBOSE", "") not in ("", "0"))
            except Exception as e:  # compiler missing, no write access to the cache, ...
                _state["error"] = f"{type(e).__name__}: {e}"
                warnings.warn(
                    "styletalker.render: could not build the C++ CPU rasterizer "
                    f"({_state['error'].splitlines()[0][:300]}); falling back to the slower pure-PyTorch "
                    "backend. Install a C++ compiler and `pip install ninja`, then run "
                    "`python -m styletalker.render.build`.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        _state["mod"] = mod
        return mod


def extension_error() -> str | None:
    get_extension()
    return _state.get("error")
