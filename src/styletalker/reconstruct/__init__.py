"""Reconstruction (paper Sec. 3.2): DMTet mesh stage -> multi-view prior -> 3D Gaussian avatar.

    from styletalker.reconstruct import run_reconstruct
    run_reconstruct("work", preset="cpu")      # writes work/reconstruct/ (avatar.pt, metrics.json, ...)

See docs/reconstruct.md.
"""

import os as _os

# Bitwise-reproducible training (a resumed run follows exactly the same path as an uninterrupted
# one): MKL otherwise picks alignment-dependent kernels that round differently from call to call.
# Must be set before MKL's first call; it does not slow the small matmuls used here.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .config import PRESETS, ReconstructConfig, make_config
from .data import ReconData, from_dataset
from .pipeline import ALIASES, load_metrics, run_reconstruct

__all__ = ["run_reconstruct", "make_config", "ReconstructConfig", "PRESETS", "from_dataset", "ReconData",
           "load_metrics", "ALIASES"]
