"""Where the side cameras' error lies: the outline by region, the mesh against the Gaussians.

    python bench/side_shape.py [--root out/bench/novel_view] [--variant ours ...]

Runs on the folder of ``bench/novel_view.py`` (its ``cameras/`` and a reconstructed variant,
``ours`` by default). Two measurements (docs/reconstruct.md, "Novel views"):

* **Region split.** For every 4th instant, the avatar and its anchoring surface (the stage-1 mesh
  moved by the expression) are rendered in each side camera; the pixels where a silhouette
  disagrees with the camera's head mask are counted per region: in front of / behind the visible
  ear (the landmark farther from the nose tip in x, tracked in that camera) and above / below the
  brows. ``out``: rendered outside the head; ``miss``: head not covered; ``err``: the share of the
  avatar's squared error in those pixels. The mesh's counts against the Gaussians' say whether an
  outline error is the surface's or the Gaussians' reach past it.
* **Slices** (``side_shape.png``): horizontal slices of the stage-1 mesh at the eyes, nose tip and
  mouth, and the mid-sagittal slice, against the training camera's visual hull and the hull of all
  three cameras (every 4th frame of each, each with its own tracked pose).

Results: ``side_shape.json``, ``side_shape.md`` and ``side_shape.png`` in ``--root``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SIDES = ("view0", "view2")
REGIONS = ("front_top", "front_low", "back_top", "back_low")
NOSE_TIP, EAR_L, EAR_R, BROWS, MOUTH = 1, 234, 454, [105, 334], [13, 14]


def regions_of(px: np.ndarray, width: int, height: int) -> dict:
    """Boolean (H,W) masks of :data:`REGIONS` from one frame's 468 landmarks in pixels."""
    nose = px[NOSE_TIP]
    ear = max((px[EAR_L], px[EAR_R]), key=lambda e: abs(e[0] - nose[0]))
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    front = np.sign(nose[0] - ear[0]) * (x - ear[0]) > 0
    top = y < px[BROWS, 1].mean()
    return {"front_top": front & top, "front_low": front & ~top, "back_top": ~front & top, "back_low": ~front & ~top}


@torch.no_grad()
def region_split(work: Path, cam: Path, every: int = 4) -> dict:
    from styletalker.animate import load_scene
    from styletalker.crossview import _project, match_frames, other_view_data
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.raster import rasterize
    from styletalker.render import Camera
    from styletalker.workfolder import WorkFolder

    av = load_scene(work, None).avatar
    ds = load_dataset(work)
    opts = WorkFolder(work).data_options(av)
    ods, od = other_view_data(cam, int(opts.get("size") or ds.width), opts)  # as evaluate --views sees it
    ia, ib = match_frames(ds.frame_index.numpy(), ods.frame_index.numpy())
    bg = torch.tensor(od.background, dtype=torch.float32)
    acc: dict = defaultdict(float)
    n = 0
    for a, b in list(zip(ia.tolist(), ib.tolist()))[::every]:
        out = av.render(ds.expression[a], Camera(od.K[b], od.world_to_cam[b], od.width, od.height), background=bg)
        img = od.composite(out.image.float().clamp(0, 1), b).numpy()
        ref, valid = od.target[b].numpy(), od.valid[b].numpy()[..., 0] > 0.5
        head = od.head[b].numpy()[..., 0] > 0.5
        sil = {"gauss": (out.alpha.float()[..., 0].numpy() > 0.5) & valid}
        mesh = rasterize(av.deformed_mesh(ds.expression[a]), av.mesh_faces, None, od.K[b], od.world_to_cam[b],
                         od.width, od.height, soft=False)
        sil["mesh"] = (mesh.face.numpy() >= 0) & valid
        err = ((img - ref) ** 2).sum(-1)
        px = _project(od.K[b].numpy().astype(np.float64), od.world_to_cam[b].numpy().astype(np.float64),
                      ods.landmarks3d[b][:468].numpy().astype(np.float64))
        for name, r in regions_of(px, od.width, od.height).items():
            for who, s in sil.items():
                acc[(name, f"{who}_out")] += int((s & ~head & r).sum())
                acc[(name, f"{who}_miss")] += int((~s & head & r).sum())
            acc[(name, "err_out")] += float(err[sil["gauss"] & ~head & r].sum())
            acc[(name, "err_miss")] += float(err[~sil["gauss"] & head & r].sum())
        acc["err"] += float(err.sum())
        acc["head"] += int(head.sum())
        n += 1
    res = {"frames": n, "head_px": acc["head"] / n, "regions": {}}
    for name in REGIONS:
        res["regions"][name] = {k: acc[(name, k)] / n for k in ("mesh_out", "mesh_miss", "gauss_out", "gauss_miss")}
        res["regions"][name].update({k: acc[(name, k)] / acc["err"] for k in ("err_out", "err_miss")})
    return res


def region_table(splits: dict) -> str:
    lines = ["| variant | camera | region | mesh out / miss (px) | avatar out / miss (px) | share of the squared error out / miss |",
             "|---|---|---|---|---|---|"]
    for variant, cams in splits.items():
        for cam, r in cams.items():
            for name in REGIONS:
                g = r["regions"][name]
                lines.append(f"| {variant} | {cam} | {name} | {g['mesh_out']:.0f} / {g['mesh_miss']:.0f} | "
                             f"{g['gauss_out']:.0f} / {g['gauss_miss']:.0f} | {g['err_out']:.1%} / {g['err_miss']:.1%} |")
    return "\n".join(lines) + "\n"


def _section(V: np.ndarray, F: np.ndarray, axis: int, value: float) -> list:
    """Segments where the triangles of (V, F) cross the plane ``V[:, axis] = value``."""
    d = V[:, axis] - value
    segs = []
    for f in F[(d[F].min(1) < 0) & (d[F].max(1) > 0)]:
        pts = [V[f[i]] + d[f[i]] / (d[f[i]] - d[f[j]]) * (V[f[j]] - V[f[i]])
               for i, j in ((0, 1), (1, 2), (2, 0)) if (d[f[i]] < 0) != (d[f[j]] < 0)]
        if len(pts) == 2:
            segs.append(pts)
    return segs


def slices_figure(root: Path, variants: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from styletalker.crossview import other_view_data
    from styletalker.reconstruct.mesh_io import read_obj
    from styletalker.reconstruct.shape_prior import visual_hull

    # every camera at 256 px with the default data options (the hull only reads masks and poses)
    datas = {c: other_view_data(root / "cameras" / c, 256, {}) for c in ("view1",) + SIDES}
    lm = datas["view1"][0].landmarks3d[:, :468].median(0).values.numpy()
    meshes = {v: [np.asarray(x, dt) for x, dt in zip(read_obj(root / v / "reconstruct" / "mesh" / "mesh.obj")[:2],
                                                      (np.float64, np.int64))] for v in variants}
    planes = [("eyes", 1, lm[[33, 263], 1].mean()), ("nose tip", 1, lm[NOSE_TIP, 1]), ("mouth", 1, lm[MOUTH, 1].mean()),
              ("mid-sagittal", 0, lm[:, 0].mean())]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    fig, axs = plt.subplots(1, len(planes), figsize=(4.2 * len(planes), 4.4))
    for ax, (title, axis, value) in zip(axs, planes):
        # the plane's coordinates u: (x, z) for horizontal slices, (z, y) for the sagittal one
        u = (0, 2) if axis == 1 else (2, 1)
        a, b = (np.linspace(-1.6, 1.6, 161), np.linspace(-1.0, 2.2, 161)) if axis == 1 else \
            (np.linspace(-1.0, 2.2, 161), np.linspace(-1.9, 1.2, 156))
        A, B = np.meshgrid(a, b)
        P = np.zeros((A.size, 3))
        P[:, axis], P[:, u[0]], P[:, u[1]] = value, A.ravel(), B.ravel()
        P = torch.from_numpy(P).float()
        hull = {c: visual_hull(P, d, frames=torch.arange(0, d.head.shape[0], 4)).numpy().reshape(A.shape)
                for c, (_, d) in datas.items()}
        ax.contourf(A, B, hull["view1"].astype(float), levels=[0.5, 1.5], colors=["#dddddd"])
        ax.contour(A, B, (hull["view1"] & hull["view0"] & hull["view2"]).astype(float), levels=[0.5], colors="k")
        for (name, (V, F)), col in zip(meshes.items(), colours):
            for k, (p, q) in enumerate(_section(V, F, axis, value)):
                ax.plot([p[u[0]], q[u[0]]], [p[u[1]], q[u[1]]], color=col, lw=1, label=name if k == 0 else None)
        near = np.abs(lm[:, axis] - value) < 0.04
        ax.plot(lm[near, u[0]], lm[near, u[1]], "r.", ms=3)
        ax.set_aspect("equal")
        ax.set_xlim(a[0], a[-1])
        ax.set_ylim(b[-1], b[0])
        ax.set_title(f"{title}: " + ("x right, z down = back" if axis == 1 else "z right = back, y down"), fontsize=9)
    axs[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("stage-1 mesh (colours) against the training camera's visual hull (grey) and all three "
                 "cameras' (black); red: tracked landmarks", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(ROOT / "out" / "bench" / "novel_view"),
                    help="the --root of bench/novel_view.py (cameras/ and the reconstructed variants)")
    ap.add_argument("--variant", action="append", help="reconstructed variants to split (default: ours)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    variants = args.variant or ["ours"]
    for v in variants:
        if not (root / v / "reconstruct" / "avatar.pt").is_file():
            raise SystemExit(f"{root / v}: no reconstruction (run bench/novel_view.py --root {root} first)")
    res = {"regions": {v: {c: region_split(root / v, root / "cameras" / c) for c in SIDES} for v in variants}}
    slices_figure(root, variants, root / "side_shape.png")
    md = region_table(res["regions"])
    (root / "side_shape.json").write_text(json.dumps(res, indent=2, default=str))
    (root / "side_shape.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
