"""Novel views against real ground truth (issue: "the avatar holds up from every side").

    python bench/novel_view.py [--root out/bench/novel_view] [--variant "NAME=KEY=VALUE;KEY=VALUE" ...]

Data: ../shared/benchmarks (three synchronised cameras of one person, see its README). Each camera
is preprocessed at 256 px; the avatar is reconstructed from the near-frontal camera (view1) only,
with ``--preset cpu`` plus each variant's overrides (dotted options of
styletalker.reconstruct.config, e.g. ``gauss.anchor=free``). Then, per variant:

* held-out frames of view1 (the training camera): PSNR / SSIM;
* view0 / view2 (the side cameras): the avatar rendered with that camera's tracked head pose and
  view1's expression at the same instant, scored against the side frame, as rendered and after a
  2D similarity alignment (styletalker.crossview), with the silhouette IoU, the shape ceiling
  (the side frame cut to the render's silhouette) and the outline share (the part of the squared
  error where the silhouettes disagree); contact sheets ``<variant>_view0.png``;
* the avatar turned by -60..60 degrees in 15-degree steps and tracked by MediaPipe: detection
  rate, |tracked - requested yaw|, the backdrop share of those renders (pixels holding more than a
  quarter of the backdrop's colour, crossview.BackdropCheck; of the training frames in brackets);
  the orbit contact sheet ``<variant>_orbit.png``;
* reconstruction minutes per stage.

Variants with the same mesh, data and model options share one stage-1 mesh (same inputs, same
seed: the same mesh; `--mesh-from` adds one of an earlier run), so an ablation of the later stages costs
no extra mesh stage. Results: ``novel_view.json``,
``novel_view.md`` and ``novel_view.png`` (bar plot) in ``--root``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "benchmarks"
CAMERAS = ("view1", "view0", "view2")

# today's pipeline before the novel-view work: a sphere as the starting surface, no symmetry, free Gaussians,
# unbounded MLP_attr, raw expressions, the mask's outline (backdrop and all) in the colour loss, 6 prior views over
# 120 degrees without confidence weights, no densification
LEGACY = {"mesh.init": "sphere", "mesh.train.w_sym": 0.0, "gauss.anchor": "free", "gauss.attr_bound": None, "gauss.clamp_expression": False,
          "model.expr_normalize": False, "model.expr_basis": False, "gauss.train.w_mouth": 0.0,
          "data.edge_px": 0, "data.unmix": False, "prior.views": 6, "prior.span_deg": 120.0, "prior.confidence": None,
          "gauss.train.densify.enabled": False}


def parse_variant(s: str) -> tuple[str, dict]:
    from styletalker.reconstruct.config import parse_assignment

    name, _, rest = s.partition("=")
    if rest == "legacy":
        return name, dict(LEGACY)
    opts = {}
    for part in filter(None, rest.split(";")):
        if part == "legacy":
            opts.update(LEGACY)
            continue
        k, v = parse_assignment(part)
        opts[k] = v
    return name, opts


def preprocess_cameras(root: Path, size: int, fov: float | None = None) -> dict:
    from styletalker.preprocess import run_preprocess

    out = {}
    for cam in CAMERAS:
        video = SHARED / f"nersemble_038_{cam}.mp4"
        if not video.is_file():
            raise SystemExit(f"{video} not found: this benchmark needs ../shared/benchmarks (see its README)")
        w = root / "cameras" / cam
        run_preprocess(video, w, size=size, progress=False, **({"fov": fov} if fov else {}))
        out[cam] = w
    return out


def mesh_key(opts: dict, preset: str) -> str:
    """The options the stage-1 mesh depends on: variants with the same key share one mesh."""
    from styletalker.reconstruct import config as C
    from styletalker.reconstruct.pipeline import mesh_stage_key, resolve_aliases

    return mesh_stage_key(C.make_config(preset, "cpu", **resolve_aliases(opts)).to_json())


def run_variant(root: Path, name: str, opts: dict, cams: dict, preset: str, mesh_from: Path | None) -> dict:
    from styletalker.crossview import cross_view_scores, yaw_sweep
    from styletalker.reconstruct import run_reconstruct
    from styletalker.workdir import read_json

    work = root / name
    if not (work / "preprocess").is_dir():
        shutil.copytree(cams["view1"] / "preprocess", work / "preprocess")
    t = time.time()
    run_reconstruct(work, preset=preset, progress=False, device="cpu", mesh_from=mesh_from, **opts)
    wall = time.time() - t
    m = read_json(work / "reconstruct" / "metrics.json")
    res = {"variant": name, "options": opts, "heldout": {"psnr": m["psnr"], "ssim": m["ssim"],
                                                         "psnr_head": m["psnr_head"]},
           "seconds": m["seconds"], "wall_this_run": round(wall, 1), "points": m.get("points")}
    for cam in ("view0", "view2"):
        r = cross_view_scores(work, cams[cam], sheet=root / f"{name}_{cam}.png")
        r.pop("per_frame")
        res[cam] = r
    res["yaw"] = yaw_sweep(work, sheet=root / f"{name}_orbit.png")
    return res


def table(results: list[dict]) -> str:
    head = ["variant", "held-out PSNR", "SSIM", "view0 PSNR", "SSIM", "aligned", "rig-aligned", "IoU (ceiling; outline)",
            "view2 PSNR", "SSIM", "aligned", "rig-aligned", "IoU (ceiling; outline)", "face found (-60..60)", "yaw err",
            "backdrop (frames)", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        y = r["yaw"]
        found = "".join("o" if d else "x" for d in y["detected"])
        mins = sum(v for k, v in r["seconds"].items() if k in ("mesh", "prior", "gaussians") and v) / 60
        lines.append("| " + " | ".join([
            r["variant"], f"{r['heldout']['psnr']:.2f}", f"{r['heldout']['ssim']:.3f}",
            *(cell for cam in ("view0", "view2") for cell in (
                f"{r[cam]['psnr']:.2f}", f"{r[cam]['ssim']:.3f}", f"{r[cam]['aligned']['psnr']:.2f}",
                "-" if "rig" not in r[cam] else f"{r[cam]['rig']['psnr']:.2f}", _shape_cell(r[cam]))),
            f"{found} ({y['detection_rate']:.0%})",
            "-" if y["mean_yaw_error"] is None else f"{y['mean_yaw_error']:.1f}", _backdrop_cell(y.get("backdrop")),
            f"{mins:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def _backdrop_cell(b: dict | None) -> str:
    """Backdrop share of the yaw sweep's renders (of the training frames), crossview.BackdropCheck."""
    if not b or b.get("mean") is None:
        return "-"
    return f"{b['mean']:.1%} ({b['frames']:.1%})"


def _shape_cell(r: dict) -> str:
    """IoU (shape ceiling dB; share of the squared error on the outline)."""
    if r.get("iou") is None:
        return "-"
    share = "" if r.get("outline_share") is None else f"; {r['outline_share']:.0%}"
    return f"{r['iou']:.3f} ({r['psnr_shape']:.2f}{share})"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r["variant"] for r in results]
    series = {"view1 held-out": [r["heldout"]["psnr"] for r in results],
              "view0 (side)": [r["view0"]["psnr"] for r in results],
              "view2 (side)": [r["view2"]["psnr"] for r in results]}
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 3.6))
    for k, (label, v) in enumerate(series.items()):
        ax.bar(x + (k - 1) * 0.27, v, 0.27, label=label)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("PSNR (dB)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(ROOT / "out" / "bench" / "novel_view"))
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--fov", type=float, default=None, help="preprocess --fov for the cameras (default: its default)")
    ap.add_argument("--variant", action="append", metavar="NAME=KEY=VALUE;...",
                    help="a reconstruction variant (dotted reconstruct options; 'legacy' = today's pipeline). "
                         "Default: today=legacy and ours (the defaults)")
    ap.add_argument("--mesh-from", action="append", default=[], metavar="DIR",
                    help="a complete reconstruct/mesh folder of an earlier run on these cameras (repeatable): "
                         "variants with the same stage-1 options take it instead of training stage 1")
    args = ap.parse_args(argv)

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(v) for v in (args.variant or ["today=legacy", "ours="])]
    cams = preprocess_cameras(root, args.size, args.fov)
    results, meshes = [], {}
    for folder in args.mesh_from:
        from styletalker.reconstruct.pipeline import mesh_folder_key

        key = mesh_folder_key(Path(folder))
        if key is None:
            raise SystemExit(f"--mesh-from {folder}: not a complete reconstruct/mesh folder")
        meshes[key] = Path(folder)
    for name, opts in variants:
        key = mesh_key(opts, args.preset)
        r = run_variant(root, name, opts, cams, args.preset, meshes.get(key))
        meshes.setdefault(key, root / name / "reconstruct" / "mesh")
        results.append(r)
        print(table([r]).splitlines()[-1], flush=True)
        # written after every variant: a long run stopped early keeps what it measured
        (root / "novel_view.json").write_text(json.dumps(results, indent=2, default=str))
        (root / "novel_view.md").write_text(table(results))
        plot(results, root / "novel_view.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
