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

from ..lazy import lazy_exports

# name -> submodule, imported on first use (``styletalker.reconstruct.presets``, read by the
# command line, must not pull in torch)
_EXPORTS = {"run_reconstruct": "pipeline", "load_metrics": "pipeline", "ALIASES": "presets", "PRESETS": "presets",
            "make_config": "config", "ReconstructConfig": "config", "from_dataset": "data", "ReconData": "data"}
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
