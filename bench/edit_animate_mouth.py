"""Does the (edited) avatar's mouth follow the driver's jawOpen? (paper Sec. 4.2 / Fig. 11, measured)

    python bench/edit_animate_mouth.py                          # out/demo/work, its reconstruction + edits
    python bench/edit_animate_mouth.py --work W --edits clown --duration 6

For every avatar (the reconstruction and each finished edit) the driver video is tracked once and
`styletalker animate` is run. Per output frame, the mouth region (box around the projected inner/
outer lip landmarks of the avatar) is compared with a render of the same frame whose jawOpen
coefficient is set to 0: the mean |difference| is the mouth's response to the driver's jaw. The
table reports its correlation with the driver's jawOpen over time and the mean response while
the driver's mouth is open (jawOpen > 0.15) vs closed (< 0.05). An edit that keeps MLP_deform
should respond like the reconstruction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MOUTH_LMK = [13, 14, 78, 308, 0, 17]


def mouth_response(work, driver, edit=None, duration=6.0, fps=10.0, out_dir=None):
    import torch

    from styletalker.animate import load_scene, run_animate
    from styletalker.video import iter_frames

    out = Path(out_dir or ROOT / "out" / "bench") / f"mouth_{edit or 'reconstruct'}.mp4"
    res = run_animate(work, driver, out, edit=edit, duration=duration, fps=fps, show_progress=False)
    frames = np.stack([f for _, _, f in iter_frames(out)]).astype(np.float32) / 255.0
    scene = load_scene(work, edit)
    names = scene.info.get("expression_names") or []
    jaw_i = names.index("jawOpen") if "jawOpen" in names else 25
    K = scene.K.numpy()
    lm = scene.avatar.landmarks.numpy()
    resp = []
    for k, (f, P) in enumerate(zip(frames, res["poses"])):
        e0 = np.array(res["expression"][k], np.float32)
        e0[jaw_i] = 0.0
        ref = scene.render(e0, torch.from_numpy(P).float())
        pts = lm[MOUTH_LMK] @ P[:3, :3].T + P[:3, 3]
        uv = np.stack([K[0, 0] * pts[:, 0] / pts[:, 2] + K[0, 2], K[1, 1] * pts[:, 1] / pts[:, 2] + K[1, 2]], 1)
        (x0, y0), (x1, y1) = uv.min(0).astype(int) - 3, uv.max(0).astype(int) + 4
        resp.append(float(np.abs(f[y0:y1, x0:x1] - ref[y0:y1, x0:x1]).mean()))
    jaw = np.asarray(res["jaw_open"])
    resp = np.asarray(resp)
    return {"avatar": edit or "reconstruct", "frames": res["frames"], "corr": float(np.corrcoef(jaw, resp)[0, 1]),
            "open": float(resp[jaw > 0.15].mean()) if (jaw > 0.15).any() else float("nan"),
            "closed": float(resp[jaw < 0.05].mean()) if (jaw < 0.05).any() else float("nan"), "video": str(out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "out/demo/work"))
    ap.add_argument("--driver", default=str(ROOT / "data/videos/cap13_edit2.mp4"))
    ap.add_argument("--edits", default=None, help="comma-separated edit names (default: all finished edits)")
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--fps", type=float, default=10.0)
    args = ap.parse_args(argv)

    from styletalker.workdir import is_complete

    work = Path(args.work)
    if args.edits is None:
        edits = sorted(p.name for p in (work / "edits").glob("*") if is_complete(p) and not p.name.startswith("ablation"))
    else:
        edits = [e for e in args.edits.split(",") if e]
    rows = [mouth_response(work, args.driver, None, args.duration, args.fps)]
    rows += [mouth_response(work, args.driver, e, args.duration, args.fps) for e in edits]
    print(f"\ndriver {Path(args.driver).name}, {args.duration:g} s at {args.fps:g} fps; mouth response = mean |render - "
          "render with jawOpen=0| in the mouth box")
    print("| avatar | frames | corr(jawOpen, response) | response, mouth open | response, mouth closed |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['avatar']} | {r['frames']} | {r['corr']:.2f} | {r['open']:.4f} | {r['closed']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
