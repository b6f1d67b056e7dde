"""Package attributes imported on first use (PEP 562), so that a light submodule of a package
(``preprocess.options``, ``reconstruct.presets``, read by the command line) can be imported
without the package's heavy ones (torch, MediaPipe)."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: ``exports`` maps a name to the submodule that defines it;
    the value is imported on first use and kept in the package's ``namespace``."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value
        return value

    return __getattr__
