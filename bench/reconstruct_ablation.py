"""Ablations of paper Table 5 on the sample video: full method vs w/o multi-view prior vs w/o mesh
stage (D1) vs re-trained deformation (D2), each scored on the same held-out frames.

    python bench/reconstruct_ablation.py                      # cpu preset, franck.webm 60 s @ 3 fps, 128 px
    python bench/reconstruct_ablation.py --root /tmp/abl --variants full,no-prior --gauss-iters 800

Stage 1 (DMTet) has identical options in "full", "no-prior" and "retrain-deform", so it is trained
once (in "full") and its finished mesh/ folder is copied into the other two; everything after it
is trained separately. Prints a table and writes ROOT/ablation.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

VARIANTS = {
    "full": {},
    "no-prior": {"no_prior": True},
    "no-mesh": {"no_mesh": True},
    "retrain-deform": {"retrain_deform": True},
}
LABEL = {"full": "Ours (mesh + prior)", "no-prior": "w/o multi-view prior", "no-mesh": "w/o mesh stage (D1)",
         "retrain-deform": "re-trained MLP_deform (D2)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/styletalker_ablation")
    ap.add_argument("--video", default=None, help="default: the sample video franck.webm")
    ap.add_argument("--start", type=float, default=0.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--variants", default="full,no-prior,no-mesh,retrain-deform")
    ap.add_argument("--mesh-iters", type=int)
    ap.add_argument("--gauss-iters", type=int)
    ap.add_argument("--force", action="store_true", help="redo variants that are already complete")
    args = ap.parse_args(argv)

    from styletalker.assets import sample_video
    from styletalker.preprocess import run_preprocess
    from styletalker.reconstruct import run_reconstruct
    from styletalker.workdir import is_complete

    root = Path(args.root)
    base = root / "preprocessed"
    t0 = time.time()
    run_preprocess(args.video or sample_video(), base, start=args.start, duration=args.duration, fps=args.fps,
                   size=args.size, progress=False)
    print(f"preprocess: {time.time() - t0:.1f} s", flush=True)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for n in names:
        if n not in VARIANTS:
            raise SystemExit(f"unknown variant {n!r}; choose from {', '.join(VARIANTS)}")
    # "full" first so its stage 1 can be shared
    names.sort(key=lambda n: n != "full")
    results = {}
    for n in names:
        work = root / n
        if args.force and work.exists():
            shutil.rmtree(work)
        if not (work / "preprocess").exists():
            work.mkdir(parents=True, exist_ok=True)
            shutil.copytree(base / "preprocess", work / "preprocess")
        shared = root / "full" / "reconstruct" / "mesh"
        if n in ("no-prior", "retrain-deform") and is_complete(shared) and not (work / "reconstruct" / "mesh").exists():
            shutil.copytree(shared, work / "reconstruct" / "mesh")
        t = time.time()
        run_reconstruct(work, preset=args.preset, progress=False, device="cpu", mesh_iters=args.mesh_iters,
                        gauss_iters=args.gauss_iters, **VARIANTS[n])
        m = json.loads((work / "reconstruct" / "metrics.json").read_text())
        results[n] = {"psnr": m["psnr"], "ssim": m["ssim"], "psnr_head": m["psnr_head"],
                      "mesh_psnr": (m.get("mesh") or {}).get("psnr"), "seconds": m["seconds"],
                      "wall_this_run": round(time.time() - t, 1), "heldout_frames": len(m["heldout_frames"])}
        print(f"{n}: PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f} ({time.time() - t:.0f} s)", flush=True)
    print()
    print(f"{'variant':32s} {'PSNR':>7s} {'SSIM':>7s} {'PSNR(head)':>11s} {'mesh PSNR':>10s}")
    for n, r in results.items():
        mp = f"{r['mesh_psnr']:.2f}" if r["mesh_psnr"] is not None else "-"
        print(f"{LABEL[n]:32s} {r['psnr']:7.2f} {r['ssim']:7.4f} {r['psnr_head']:11.2f} {mp:>10s}")
    out = {"options": vars(args), "results": results, "total_seconds": round(time.time() - t0, 1)}
    (root / "ablation.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n-> {root / 'ablation.json'}  (total {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
