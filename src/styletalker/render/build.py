"""Build (or check) the C++ CPU rasterizer: ``python -m styletalker.render.build``.

Run by ``make setup`` so that tests and the first render do not pay the ~1 minute compile.
The compiled module is cached by torch under ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions/py311_cpu/styletalker_raster_cpu_<isa>/``). Exits non-zero if the
compiled extension does not match the dense reference on a small scene; if it cannot be built
at all (no compiler) it warns and exits 0 — render() then uses the pure-PyTorch fallback — unless
``--strict`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--verbose", action="store_true", help="show the compiler commands")
    ap.add_argument("--strict", action="store_true", help="exit non-zero if the extension cannot be built")
    args = ap.parse_args(argv)

    import torch

    from . import _ext

    t0 = time.time()
    try:
        mod = _ext.load_extension(verbose=args.verbose)
    except Exception as e:
        print(f"styletalker.render: WARNING: building the C++ CPU rasterizer failed:\n{e}", file=sys.stderr)
        print("render() will fall back to the (much slower) pure-PyTorch backend. Install a C++ compiler "
              "(e.g. apt-get install g++) and rerun `python -m styletalker.render.build`.", file=sys.stderr)
        return 1 if args.strict else 0
    print(f"styletalker.render: C++ CPU rasterizer ready ({_ext.extension_name()}, {time.time() - t0:.1f} s): {mod.__file__}")

    # quick self-check against the dense reference
    from .camera import Camera, look_at
    from .cpu import render_cpu
    from .dense import render_dense

    g = torch.Generator().manual_seed(0)
    n = 64
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 0.8
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 4)
    ops = torch.rand(n, generator=g, dtype=torch.float64)
    cols = torch.rand(n, 3, generator=g, dtype=torch.float64)
    cam = Camera.from_fov(40, 30, 50.0, look_at((0.0, 0.0, -2.0), (0.0, 0.0, 0.0))).to(dtype=torch.float64)
    a = render_cpu(means, quats, scales, ops, cols, cam, (1.0, 1.0, 1.0))
    b = render_dense(means, quats, scales, ops, cols, cam, (1.0, 1.0, 1.0))
    err = max(float((x - y).abs().max()) for x, y in zip(a, b))
    if err > 1e-9:
        print(f"styletalker.render: self-check FAILED (max difference to dense {err:.2e})", file=sys.stderr)
        return 1
    print(f"styletalker.render: self-check against the dense reference passed (max diff {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
