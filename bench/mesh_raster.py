"""Stage 1's speed with the mesh rasterizer's visibility pass in C++ against the PyTorch one, in one run.

    python bench/mesh_raster.py [--work W] [--iters 30] [--repeats 2] [--out docs/mesh_raster.json]

On the demo clip (``--work``: a preprocessed work folder; default: franck.webm preprocessed as
`make demo` does, 20 s from 10 s at 5 fps, 256 px, into /tmp/styletalker_bench_mesh_raster), the
cpu preset's stage-1 model starts from the clip's hull and trains ``--iters`` iterations twice
from the same state and seed: once with the visibility pass in PyTorch
(``raster._visibility_torch``, what every CPU run used before), once in C++
(``render/csrc/mesh_cpu.cpp``). The two runs must end with bit-identical parameters (the C++ pass
picks the same face for every pixel); the timings alternate which goes first, ``--repeats``
times, and the ratio of the medians is reported (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/styletalker_bench_mesh_raster",
                    help="preprocessed work folder (preprocessed here from the demo clip if it has none)")
    ap.add_argument("--iters", type=int, default=30, help="stage-1 iterations per timed run")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per path (alternating which goes first)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    import torch

    from styletalker.assets import sample_video
    from styletalker.preprocess import load_dataset, run_preprocess
    from styletalker.reconstruct import config as C
    from styletalker.reconstruct import raster
    from styletalker.reconstruct.checkpoint import deterministic
    from styletalker.reconstruct.data import from_options
    from styletalker.reconstruct.mesh_stage import make_optimizer
    from styletalker.reconstruct.pipeline import build_mesh_model, mesh_train_step, set_initial_shape

    work = Path(args.work)
    if not (work / "preprocess").is_dir():
        run_preprocess(sample_video(), work, start=10.0, duration=20.0, fps=5.0, size=256, progress=False)
    cfg = C.make_config("cpu", "cpu")
    data = from_options(load_dataset(work), asdict(cfg.data))
    torch.manual_seed(cfg.seed)
    start = build_mesh_model(cfg, data)
    set_initial_shape(start, cfg, data)
    if raster._mesh_extension(torch.zeros(1)) is None:
        from styletalker.render._ext import extension_error

        print(f"the C++ extension is not available: {extension_error()}", file=sys.stderr)
        return 1
    use_cpp = raster._visibility

    def run(cpp: bool):
        raster._visibility = use_cpp if cpp else raster._visibility_torch
        model = copy.deepcopy(start)
        opt = make_optimizer(model, cfg.mesh.train)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        t = time.perf_counter()
        with deterministic(True):  # as the pipeline trains on the CPU
            for _ in range(args.iters):
                mesh_train_step(model, opt, data, cfg.mesh.train, gen, train_deform=True)
        return (time.perf_counter() - t) / args.iters, model.state_dict()

    times = {"torch": [], "cpp": []}
    states = {}
    for r in range(args.repeats):
        for cpp in ((False, True) if r % 2 == 0 else (True, False)):
            dt, states["cpp" if cpp else "torch"] = run(cpp)
            times["cpp" if cpp else "torch"].append(dt)
    raster._visibility = use_cpp
    same = all(torch.equal(states["torch"][k], states["cpp"][k]) for k in states["torch"])
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"frames": len(data), "size": data.width, "iters": args.iters, "repeats": args.repeats,
           "threads": torch.get_num_threads(), "ms_per_iter_torch": round(1000 * med["torch"], 1),
           "ms_per_iter_cpp": round(1000 * med["cpp"], 1), "speedup": round(med["torch"] / med["cpp"], 2),
           "identical_parameters": same, "all_ms": {k: [round(1000 * x, 1) for x in v] for k, v in times.items()}}
    print(f"stage 1, {data.width} px, {args.iters} iterations x {args.repeats}: visibility in PyTorch "
          f"{res['ms_per_iter_torch']} ms/iter, in C++ {res['ms_per_iter_cpp']} ms/iter: {res['speedup']}x; "
          f"parameters after training {'identical' if same else 'DIFFERENT'}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
