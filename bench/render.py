"""Benchmark the CPU Gaussian rasterizer against the naive dense PyTorch reference.

    python bench/render.py            # 128x128 / 256x256 x 10k / 50k Gaussians
    python bench/render.py --quick    # fewer repeats, fewer dense bands
    python bench/render.py --sizes 256 --counts 50000 --repeats 10

Scene: a head-like shell (ellipsoid of radius ~1 dm, canonical units) 6 dm in front of the camera,
anisotropic Gaussians with scales 0.005-0.03 dm, random orientations, opacities and colours (what
the avatar looks like). Timed: forward + backward of a loss using image, alpha and depth.

The dense reference evaluates every Gaussian at every pixel and keeps all of it for autograd, so a
full 256x256 x 50k frame would need >100 GB. It is therefore timed on horizontal *bands* of rows
(rendered exactly as in the full frame, by shifting the principal point) and the frame time is
extrapolated linearly from the bands (the dense cost does not depend on content). Rows marked
``extrap`` are extrapolated; ``--dense-full`` times all bands (slow).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from styletalker.render import Camera, look_at  # noqa: E402
from styletalker.render.cpu import cpu_implementation, render_cpu  # noqa: E402
from styletalker.render.dense import render_dense  # noqa: E402


def head_scene(n: int, seed: int = 0):
    """Gaussians on a head-sized ellipsoidal shell (canonical head space: dm, y down, z away)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    radius = 1.0 + 0.04 * torch.randn(n, 1, generator=g)
    means = d * radius * torch.tensor([0.8, 1.05, 0.9])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.005), math.log(0.03), generator=g))
    opacities = torch.sigmoid(torch.randn(n, generator=g) * 1.5 + 1.0)
    colors = torch.rand(n, 3, generator=g)
    return means, quats, scales, opacities, colors


def head_camera(size: int) -> Camera:
    return Camera.from_fov(size, size, 24.0, look_at((0.0, 0.0, -6.0), (0.0, 0.0, 0.0)))


def band_camera(cam: Camera, row0: int, rows: int) -> Camera:
    """The rows [row0, row0+rows) of ``cam``'s image, as a camera of its own."""
    K = cam.K.clone()
    K[1, 2] -= row0
    return Camera(K, cam.world_to_cam, cam.width, rows, cam.near, cam.far)


def _loss(img, alpha, depth, weights):
    w1, w2, w3 = weights
    return (img * w1).sum() + (alpha * w2).sum() + (depth * w3).sum()


def _weights(shape_hw, C, seed=1):
    g = torch.Generator().manual_seed(seed)
    H, W = shape_hw
    return (torch.randn(H, W, C, generator=g), torch.randn(H, W, 1, generator=g), torch.randn(H, W, 1, generator=g))


def time_fwd_bwd(fn, params, cam, weights, bg, repeats: int) -> list[tuple[float, float]]:
    """(wall seconds, process CPU seconds) of forward + backward, per repeat."""
    out = []
    for _ in range(repeats):
        for p in params:
            p.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        img, a, d = fn(*params, cam, bg)
        _loss(img, a, d, weights).backward()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def time_fwd(fn, params, cam, bg, repeats: int) -> list[float]:
    out = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*params, cam, bg)
            out.append(time.perf_counter() - t0)
    return out


def _median2(ts):
    return statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)


def dense_time(params, cam, weights, bg, n_bands_timed: int | None, pair_budget: float = 1.2e7):
    """Seconds for one dense forward+backward of the whole frame (possibly extrapolated)."""
    H, W = cam.height, cam.width
    N = params[0].shape[0]
    rows = max(1, min(H, int(pair_budget // (N * W))))
    bands = list(range(0, H, rows))
    if n_bands_timed is None or n_bands_timed >= len(bands):
        chosen = bands
    else:  # spread over the image
        idx = torch.linspace(0, len(bands) - 1, n_bands_timed).round().long().unique().tolist()
        chosen = [bands[i] for i in idx]
    total_rows = 0
    wall = cpu = 0.0
    for r0 in chosen:
        r = min(rows, H - r0)
        bc = band_camera(cam, r0, r)
        wb = tuple(w[r0 : r0 + r] for w in weights)
        tw, tc = time_fwd_bwd(lambda *a: render_dense(*a, chunk=r * W), params, bc, wb, bg, 1)[0]
        wall, cpu = wall + tw, cpu + tc
        total_rows += r
    extrap = total_rows < H
    f = H / total_rows
    return wall * f, cpu * f, extrap, f"{len(chosen)}/{len(bands)} bands of {rows} rows"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of the CPU backend (median)")
    ap.add_argument("--dense-bands", type=int, default=None, help="dense bands to time per config (default 8, quick 3)")
    ap.add_argument("--dense-full", action="store_true", help="time every dense band (no extrapolation)")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--impl", choices=["ext", "torch"], default=None,
                    help="CPU backend implementation to time (default: the C++ extension if it builds; "
                         "'torch' = the pure-PyTorch fallback)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 10)
    n_bands = None if args.dense_full else (args.dense_bands or (3 if args.quick else 8))

    impl = args.impl or cpu_implementation()
    cpu_fn = functools.partial(render_cpu, impl=impl)
    load = ", load average %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}{load}, "
          f"cpu backend implementation: {impl}")
    bg = torch.tensor([1.0, 1.0, 1.0])
    rows = []
    print("times in ms: wall-clock median (process CPU time in brackets); speed-up = dense / cpu backend")
    hdr = (f"{'size':>8} {'N':>6} | {'cpu fwd':>8} {'cpu fwd+bwd':>17} | {'dense fwd+bwd':>24} | "
           f"{'speed-up':>8} {'(CPU)':>7}")
    print(hdr)
    print("-" * len(hdr))
    for size in args.sizes:
        cam = head_camera(size)
        weights = _weights((size, size), 3)
        for n in args.counts:
            params = [t.clone().requires_grad_() for t in head_scene(n)]
            time_fwd_bwd(cpu_fn, params, cam, weights, bg, 1)  # warm-up
            t_cpu, c_cpu = _median2(time_fwd_bwd(cpu_fn, params, cam, weights, bg, repeats))
            t_fwd = statistics.median(time_fwd(cpu_fn, params, cam, bg, repeats))
            if args.no_dense:
                t_dense, c_dense, extrap, how = float("nan"), float("nan"), False, "skipped"
            else:
                t_dense, c_dense, extrap, how = dense_time(params, cam, weights, bg, n_bands)
            ratio, cratio = t_dense / t_cpu, c_dense / c_cpu
            tag = "extrap" if extrap else "full"
            print(f"{size:>4}x{size:<3} {n:>6} | {t_fwd*1e3:8.1f} {t_cpu*1e3:7.1f} ({c_cpu*1e3:7.1f}) | "
                  f"{t_dense*1e3:9.0f} ({c_dense*1e3:9.0f}) {tag:6} | {ratio:7.0f}x {cratio:6.0f}x   (dense: {how})",
                  flush=True)
            rows.append(dict(size=size, n=n, cpu_fwd_ms=t_fwd * 1e3, cpu_ms=t_cpu * 1e3, cpu_cpu_ms=c_cpu * 1e3,
                             dense_ms=t_dense * 1e3, dense_cpu_ms=c_dense * 1e3, dense_extrapolated=extrap,
                             ratio=ratio, cpu_time_ratio=cratio))
    return rows


if __name__ == "__main__":
    main()
