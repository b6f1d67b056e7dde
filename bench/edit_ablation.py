"""Landmark-weighting ablation of the edit loop (paper Fig. 6, E1-E4 vs. ours), measured.

    python bench/edit_ablation.py                       # on out/demo/work (scripts/demo.sh makes it)
    python bench/edit_ablation.py --work W --prompt "make his skin green" --iters 300
    python bench/edit_ablation.py --variants ours,e3 --force

Every variant is a normal ``styletalker edit`` run (``WORK/edits/ablation-<prompt>-<variant>/``, resumable,
with previews and metrics.json) on the same reconstructed avatar, same prompt, seed and iterations:

* E1   fixed b = 0.8, plain L1                        (paper: loses identity)
* E2   fixed b = 0.2, plain L1                        (paper: insufficient edit)
* E3   random b ~ N(0.5, 1), plain L1                 (= --no-landmark-weight)
* E4   random b, L1 always weighted by w              (paper's E4)
* ours random b, Eq. 8 (w if b >= 0.5 else 1 - w)     (= the default)
* ours-s0.3  Eq. 8 with b ~ N(0.5, 0.3)               (narrower strength distribution)

Measured on the held-out frames (edited vs. unedited avatar render, same pose + expression):
mean |change| inside the face oval and outside it (and per region), and the MediaPipe landmark
displacement between the two renders. Results: printed table + JSON
(``out/bench/edit_ablation_<prompt>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {
    "e1": dict(b_fixed=0.8, weighting="none"),
    "e2": dict(b_fixed=0.2, weighting="none"),
    "e3": dict(weighting="none"),
    "e4": dict(weighting="w"),
    "ours": dict(weighting="eq8"),
    "ours-s0.3": dict(weighting="eq8", b_std=0.3),
}
LABELS = {
    "e1": "E1 fixed b=0.8, L1", "e2": "E2 fixed b=0.2, L1", "e3": "E3 random b, L1",
    "e4": "E4 random b, L1*w", "ours": "ours: random b, Eq. 8", "ours-s0.3": "ours, b~N(0.5,0.3)",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "out/demo/work"), help="work folder with a finished reconstruction")
    ap.add_argument("--prompt", default="make his skin green")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="e1,e2,e3,e4,ours,ours-s0.3")
    ap.add_argument("--force", action="store_true", help="redo finished variants")
    ap.add_argument("--out", default=None, help="JSON results (default out/bench/edit_ablation_<prompt>.json)")
    args = ap.parse_args(argv)

    from styletalker.edit.loop import run_edit, slugify
    from styletalker.edit.metrics import LandmarkDetector
    from styletalker.workdir import read_json

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    rows = {}
    with LandmarkDetector() as det:
        for v in names:
            t = time.time()
            out = run_edit(args.work, args.prompt, name=f"ablation-{slugify(args.prompt, 24)}-{v}", force=args.force,
                           iters=args.iters,
                           seed=args.seed, detector=det, **VARIANTS[v])
            m = read_json(out / "metrics.json")
            rows[v] = {"label": LABELS[v], "options": VARIANTS[v], "folder": str(out), **m["heldout"],
                       "train_seconds": m.get("train_seconds"), "wall_seconds": round(time.time() - t, 1),
                       "b_stats": m.get("b_stats")}
            print(f"{v}: done in {time.time() - t:.0f}s", file=sys.stderr, flush=True)

    rec = read_json(Path(args.work) / "reconstruct" / "metrics.json") if (Path(args.work) / "reconstruct" / "metrics.json").is_file() else {}
    result = {"work": args.work, "prompt": args.prompt, "iters": args.iters, "seed": args.seed,
              "reconstruction": {k: rec.get(k) for k in ("psnr", "ssim", "preset", "points")}, "variants": rows}
    if args.out is None:
        args.out = str(ROOT / "out" / "bench" / f"edit_ablation_{slugify(args.prompt, 24)}.json")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")

    hdr = ("variant", "inside face", "outside face", "ratio", "features", "hair", "neck", "background", "lmk px",
           "lmk %fw", "lmk fail")
    print(f"\nprompt '{args.prompt}', {args.iters} iterations, held-out views; change = mean |edited - unedited| render")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for v, r in rows.items():
        print(f"| {r['label']} | {r['inside_face']:.4f} | {r['outside_face']:.4f} | {r['inside_outside_ratio']:.1f} | "
              f"{r['features']:.4f} | {r['hair']:.4f} | {r['neck']:.4f} | {r['background']:.4f} | {r['landmark_px']:.2f} | "
              f"{r['landmark_pct_face_width']:.2f} | {r['lmk_fail_edit']}/{r['lmk_views']} |")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
