"""Compute and print metrics for a work folder.

Reconstruction: re-renders the held-out frames (every 10th frame, never trained on) from
reconstruct/avatar.pt and prints PSNR / SSIM (whole frame on the constant background) and PSNR
inside the head mask; updates reconstruct/metrics.json unless --no-write.
Edits: prints the metrics of every work/edits/*/metrics.json written by `styletalker edit`.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("work", help="work folder")
    p.add_argument("--no-write", action="store_true", help="do not update reconstruct/metrics.json")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            yield f"{prefix}{k}", v


def run(args):
    import json
    from pathlib import Path

    from ..errors import InputError
    from ..reconstruct.evaluate import recompute_metrics
    from ..workdir import read_json

    work = Path(args.work)
    if not work.is_dir():
        raise InputError(f"{work}: work folder not found")
    report = {}
    rec = recompute_metrics(work, write=not args.no_write)
    report["reconstruct"] = rec
    edits = {}
    for p in sorted((work / "edits").glob("*/metrics.json")):
        try:
            edits[p.parent.name] = read_json(p)
        except (OSError, ValueError) as e:
            edits[p.parent.name] = {"error": f"unreadable metrics.json ({e})"}
    report["edits"] = edits
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    if rec.get("psnr") is None:
        print("reconstruct: no held-out frames to score")
    else:
        print(f"reconstruct ({len(rec['heldout_frames'])} held-out frames): PSNR {rec['psnr']:.2f} dB  "
              f"SSIM {rec['ssim']:.4f}  PSNR(head) {rec['psnr_head']:.2f} dB")
    if rec.get("mesh"):
        print(f"  stage-1 mesh:   PSNR {rec['mesh']['psnr']:.2f} dB  SSIM {rec['mesh']['ssim']:.4f}")
    if not edits:
        print("edits: none")
    for name, m in edits.items():
        print(f"edit {name}:")
        for k, v in _flat(m):
            print(f"  {k}: {_fmt(v)}")
    return 0
