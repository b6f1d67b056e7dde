"""Live driving, measured: a driver video fed at its real frame rate through the live pipeline
(styletalker.live: newest-frame hand-over; tracking, the avatar's Gaussians and rasterization on
threads of their own), as `styletalker animate WORK --driver 0` and the viewer's drive panel run it.

    python bench/live.py [--work out/demo/work] [--driver data/videos/cap13_edit2.mp4]
                         [--seconds 20] [--size 256] [--num-faces 2] [--torch-threads 1]
                         [--variants baseline,new,baseline,new] [--quality] [--profile]
                         [--json out/bench/live.json]

Reports, per variant run (back to back in one process, so that a shared machine's load hits them
alike; the ratio to ``baseline`` at the end): frames/s at which the avatar was updated (sustained:
rendered images over the wall time between the first and the last one), latency from a driver
frame's arrival (its due time in the video) to the finished avatar image (median and 95th
percentile), render and tracking time per frame, how many driver frames were skipped because the
tracker was busy, each stage's own CPU time and the frames/s that allows on 2 idle cores.
Variants: ``baseline`` (the code before issue 11's speed-ups: the avatar's forward and the render
in turn on the caller's thread), ``frozen`` (FrozenAvatar), ``pipelined`` (+ Gaussians on their own
thread), ``new`` (+ the live level of detail: what live driving does now). ``--quality``: the
level of detail's PSNR against the full avatar; ``--profile``: one frame in parts, before / after.
The goal (issue 11) is 25 frames/s at 256 px on 2 CPU cores. With the machine, load average and
commit in the JSON. ``--num-faces 1`` asks MediaPipe for one face (it re-detects less often; other
blendshapes than the preprocessing tracker, docs/viewer.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2), "torch_threads": torch.get_num_threads(),
            "commit": commit}


class _Forward:
    """The render path before FrozenAvatar: the avatar's own forward for every frame (``baseline``)."""

    def __init__(self, avatar):
        self.avatar = avatar

    def __call__(self, expression):
        return self.avatar(expression)

    def render(self, expression, camera, background=None, backend="auto"):
        return self.avatar.render(expression, camera, background, backend)


VARIANTS = {  # name: (avatar path, pipelined, live level of detail)
    "baseline": ("forward", False, False),  # the code before issue 11's speed-ups: avatar forward + render in turn
    "frozen": ("frozen", False, False),  # FrozenAvatar, Gaussians and rasterization in turn
    "pipelined": ("frozen", True, False),  # + Gaussians on their own thread (live.LiveGaussians)
    "new": ("frozen", True, True),  # + the live level of detail (styletalker.lod): what live driving does now
}


def run(work, driver, seconds: float, size: int, num_faces: int, edit: str | None = None,
        variant: str = "new", min_weight: float | None = None, threads: int | None = 1) -> dict:
    from styletalker.animate import load_scene
    from styletalker.live import LiveDrive, LiveStats, VideoSource, live_frames

    from styletalker.lod import live_lod

    path, pipeline, lod = VARIANTS[variant]
    scene = load_scene(work, edit, "cpu")
    if path == "forward":
        scene.frozen = _Forward(scene.avatar)
    scale = size / scene.height
    scene.render(scene.neutral_expression, scene.ref_pose, scale)  # warm-up (extension load, allocations)
    t_lod = time.perf_counter()
    kept = live_lod(scene, *([min_weight] if min_weight else [])).kept if lod else scene.avatar.num_points  # as run_live: before the source starts
    t_lod = time.perf_counter() - t_lod
    drive = LiveDrive(scene, VideoSource(driver, duration=seconds), size=size, num_faces=num_faces)
    stats = LiveStats()
    load0 = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    drive.start()
    try:
        for _ in live_frames(scene, drive, scale=scale, stats=stats, duration=seconds, pipeline=pipeline, lod=lod,
                             torch_threads=threads if variant != "baseline" else None):
            pass
    finally:
        drive.stop()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if drive.error is not None:
        raise SystemExit(f"live driving failed: {drive.error}")
    src = drive.source
    return {"variant": variant, "live_torch_threads": threads if variant != "baseline" else None,
            "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "work": str(work), "edit": edit, "driver": str(driver), "driver_fps": src.fps, "seconds": round(wall, 1),
            "size": size, "gaussians": scene.avatar.num_points, "gaussians_drawn": kept,
            "lod_seconds": round(t_lod, 2) if lod else None, "num_faces": num_faces, **stats.summary(),
            "driver_frames": src.published, "tracked": drive.tracked, "no_face": drive.no_face,
            "skipped_by_tracker": drive.skipped,
            "track_ms_mean": round(1000 * drive.track_seconds / max(drive.tracked, 1), 1),
            "track_cpu_ms_mean": round(1000 * drive.track_cpu / max(drive.tracked, 1), 1),
            "process_cpu_s": round(cpu, 1), "process_cpu_ms_per_shown_frame": round(1000 * cpu / max(stats.frames, 1), 1),
            **_idle_bound(stats.summary(), drive, pipeline, cpu, stats.stage)}


def _idle_bound(s: dict, drive, pipeline: bool, cpu: float, stage) -> dict:
    """What the stages' own CPU time allows on 2 idle cores: each stage on one core at most, all of
    them within 2 cores' time. Render and Gaussians: their threads' CPU clocks (not slowed by other
    processes' load); tracking: the rest of the process' CPU time per tracked frame (MediaPipe
    works on threads of its own; video decoding is counted here too)."""
    frames = max(s.get("frames", 0), 1)
    render = s.get("render_cpu_ms_mean", 0.0)
    gauss = s.get("gaussians_cpu_ms_mean", 0.0) if pipeline else 0.0
    used = render * frames + (1000 * stage.cpu if pipeline and stage is not None else 0.0)
    track = max(1000 * cpu - used, 0.0) / max(drive.tracked, 1)
    stages = [track, render] + ([gauss] if pipeline else [])
    return {"stage_cpu_ms": [round(x, 1) for x in stages],
            "fps_bound_2_idle_cores": round(1000 / max(max(stages), sum(stages) / 2), 1)}


def _summary(vals) -> dict:
    got = [v for v in vals if v is not None]
    return {"n": len(got), "drawn_in_full": len(vals) - len(got), "psnr_min": round(min(got), 2) if got else None,
            "psnr_mean": round(float(np.mean(got)), 2) if got else None}


def quality(work, edit: str | None = None, size: int = 256, min_weight: float | None = None) -> dict:
    """The live level of detail against the full avatar: PSNR (dB) of the pruned avatar's
    pictures on every training frame at ``size`` px, and on the reference view turned between and
    up to the probed head turns (within lod.MAX_ANGLE) at training expressions, at ``size`` and
    twice ``size`` px (the viewer's default 512)."""
    import torch

    from styletalker.animate import load_scene
    from styletalker.lod import live_lod, turn
    from styletalker.metrics import psnr
    from styletalker.preprocess import load_dataset
    from styletalker.render import Camera

    scene = load_scene(work, edit, "cpu")
    lod = live_lod(scene, *([min_weight] if min_weight else []))
    ds = load_dataset(scene.work)
    bg = torch.tensor(scene.background)

    def both(expr, K, w2c, w, h):
        cam = Camera(K, w2c, w, h)
        if not lod.covers(K, w2c):  # live driving draws this view with the full avatar
            return None
        with torch.no_grad():
            a = scene.frozen.render(expr, cam, bg).image.clamp(0, 1)
            b = lod.frozen.render(expr, cam, bg).image.clamp(0, 1)
        return psnr(b, a)

    out = {"gaussians": scene.avatar.num_points, "kept": lod.kept, "min_weight_px": lod.min_weight}
    s = size / ds.height
    train = []
    for i in range(ds.expression.shape[0]):
        K = ds.K[i].clone()
        K[:2] *= s
        train.append(both(ds.expression[i], K, ds.world_to_cam[i], round(ds.width * s), size))
    out["train_frames"] = _summary(train)
    ref = scene.ref_pose.double().numpy()
    turns = [(8, 0), (22, 0), (-22, 9), (24, -13), (-24, 13), (0, 22), (-11, -19), (19, 19), (28, 0), (-28, 0),
             (0, -28), (7, 27)]  # between and up to the probed turns (lod.RINGS)
    n = ds.expression.shape[0]
    for px in (size, 2 * size):
        K = scene.K.clone()
        K[:2] *= px / scene.height
        vals = [both(ds.expression[(37 * j) % n], K, torch.from_numpy(ref @ turn(lod.pivot, y, p)).float(),
                     round(scene.width * px / scene.height), px) for j, (y, p) in enumerate(turns)]
        rng = np.random.default_rng(0)  # and random turns within lod.MAX_ANGLE at random training expressions
        for _ in range(20 if px == size else 0):
            a, phi = 28.0 * math.sqrt(rng.random()), 2 * math.pi * rng.random()
            vals.append(both(ds.expression[int(rng.integers(n))], K,
                             torch.from_numpy(ref @ turn(lod.pivot, a * math.cos(phi), a * math.sin(phi))).float(),
                             round(scene.width * px / scene.height), px))
            turns.append((round(a * math.cos(phi), 1), round(a * math.sin(phi), 1)))
        out[f"turned_{px}px"] = _summary(vals)
        out[f"turned_{px}px"]["psnr"] = {f"yaw {y} pitch {p}": (round(v, 1) if v is not None else None)
                                         for (y, p), v in zip(turns, vals)}
    return out


def profile(work, edit: str | None = None, size: int = 256, repeats: int = 30) -> dict:
    """One live frame in parts (ms, median over ``repeats`` random expressions, on the calling
    thread with torch's current threads): before (the avatar's forward) and after (FrozenAvatar,
    full and with the live level of detail), projection + sort, rasterization, background."""
    import torch

    from styletalker.animate import load_scene
    from styletalker.lod import live_lod
    from styletalker.render.cpu import project_cpu, rasterize_cpu, sort_by_depth

    scene = load_scene(work, edit, "cpu")
    av = scene.avatar
    lod = live_lod(scene)
    cam = scene.camera(scene.ref_pose, size / scene.height)
    bg = torch.tensor(scene.background)
    rng = np.random.default_rng(0)
    T: dict = {}

    def tick(k, t0):
        T.setdefault(k, []).append(time.perf_counter() - t0)
        return time.perf_counter()

    def raster(g, tag):
        t = time.perf_counter()
        xy, conic, depth, valid = project_cpu(g.means, g.quats, g.scales, cam)
        order = sort_by_depth(depth, valid)
        t = tick(f"projection + sort {tag}", t)
        out, Tr = rasterize_cpu(xy, conic, g.opacities, torch.cat([g.colors, depth[:, None]], 1), order,
                                cam.height, cam.width)
        t = tick(f"rasterization {tag}", t)
        (out[..., :3] + Tr[..., None] * bg).clamp(0, 1).numpy()
        tick(f"background + numpy {tag}", t)

    n = av.num_points
    with torch.no_grad():
        for _ in range(repeats + 5):
            e = scene.neutral_expression + 0.3 * torch.from_numpy(rng.random(av.config["n_expr"]).astype(np.float32)) \
                * (av.expr_max - av.expr_min)
            x = av.expression_input(e)
            t = time.perf_counter()
            av._attribute_residuals(x)
            t = tick("before: MLP_attr", t)
            av.color(av.features, x)
            t = tick("before: MLP_color", t)
            av.deformed_mesh(e)
            t = tick("before: MLP_deform (mesh)", t)
            g = av(e)
            t = tick("before: Gaussians, all (forward)", t)
            raster(g, f"({n})")
            fz = scene.frozen
            fz._memo.clear()
            t = time.perf_counter()
            fz._attribute_residuals(x)
            t = tick("after: MLP_attr", t)
            fz.color(x)
            t = tick("after: MLP_color", t)
            fz.deform(x)
            t = tick("after: MLP_deform (mesh)", t)
            fz(e)
            t = tick("after: Gaussians, all (FrozenAvatar)", t)
            lod.frozen._memo.clear()
            t = time.perf_counter()
            gl = lod.frozen(e)
            tick(f"after: Gaussians, all (level of detail, {lod.kept})", t)
            raster(gl, f"({lod.kept})")
    return {k: round(1000 * float(np.median(v[5:])), 2) for k, v in T.items()}


def main(argv=None) -> int:
    from styletalker.assets import find_asset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "out" / "demo" / "work"), help="work folder with a reconstruction")
    ap.add_argument("--edit", default=None)
    ap.add_argument("--driver", default=None, help="driver video (default data/videos/cap13_edit2.mp4)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=256, help="rendered image height in pixels")
    ap.add_argument("--num-faces", type=int, default=2, choices=[1, 2])
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--variants", default="new",
                    help="comma-separated, run back to back in this order: " + ", ".join(VARIANTS)
                    + " (e.g. baseline,new,baseline,new: speed as a ratio on a shared machine)")
    ap.add_argument("--profile", action="store_true", help="also time one frame in parts, before and after")
    ap.add_argument("--quality", action="store_true",
                    help="also check the live level of detail against the full avatar (PSNR)")
    ap.add_argument("--live-threads", type=int, default=1,
                    help="torch threads while live_frames runs (all variants but baseline; 0: torch's)")
    ap.add_argument("--lod-min-weight", type=float, default=None,
                    help="pixels under which a Gaussian is left out (default styletalker.lod.MIN_WEIGHT)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "live.json"))
    a = ap.parse_args(argv)
    import torch

    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    driver = a.driver or find_asset("videos/cap13_edit2.mp4")
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    runs = []
    for v in variants:
        r = run(a.work, driver, a.seconds, a.size, a.num_faces, a.edit, v, a.lod_min_weight, a.live_threads)
        runs.append(r)
        extra = f", Gaussians {r['gaussians_ms_mean']:.0f} ms (own thread)" if r.get("pipeline") else ""
        print(f"{v}: {r['fps']:.1f} frames/s sustained (goal 25), latency {r['latency_ms_median']:.0f} ms median / "
              f"{r['latency_ms_p95']:.0f} ms p95, render {r['render_ms_median']:.0f} ms{extra}, tracking "
              f"{r['track_ms_mean']:.0f} ms per frame; {r['skipped_by_tracker']} of {r['driver_frames']} driver "
              f"frames skipped by the tracker; {r['gaussians_drawn']} of {r['gaussians']} Gaussians drawn at {a.size} px; "
              f"load average "
              f"{r['load_average_1min'][0]:g} -> {r['load_average_1min'][1]:g}; CPU per stage "
              f"{' / '.join(f'{x:g}' for x in r['stage_cpu_ms'])} ms (tracking / render / Gaussians): at most "
              f"{r['fps_bound_2_idle_cores']:g} frames/s on 2 idle cores", flush=True)
    if a.quality:
        q = quality(a.work, a.edit, a.size, a.lod_min_weight)
        print(f"live level of detail: {q['kept']} of {q['gaussians']} Gaussians drawn; PSNR against the full avatar: "
              + "; ".join(f"{k} min {v['psnr_min']} / mean {v['psnr_mean']} dB ({v['n']} views, "
                          f"{v['drawn_in_full']} outside it)"
                          for k, v in q.items() if isinstance(v, dict)), flush=True)
    prof = None
    if a.profile:
        prof = profile(a.work, a.edit, a.size)
        for k, v in prof.items():
            print(f"  {k:50s} {v:7.2f} ms")
        print(f"  (profile: torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f})", flush=True)
    res = {**(runs[-1] if runs else {}), "runs": runs, **({"profile_ms": prof} if prof else {}), **({"quality": q} if a.quality else {}), "machine": machine(),
           "command": " ".join(["python", "bench/live.py", *(argv if argv is not None else sys.argv[1:])])}
    if "baseline" in variants and len(set(variants)) > 1:
        base = [r["fps"] for r in runs if r["variant"] == "baseline"]
        res["fps_ratio_to_baseline"] = {v: round(float(np.mean([r["fps"] for r in runs if r["variant"] == v]))
                                                 / max(float(np.mean(base)), 1e-9), 2)
                                        for v in dict.fromkeys(variants) if v != "baseline"}
        print("frames/s against baseline (mean over its runs): "
              + ", ".join(f"{v} x{q:g}" for v, q in res["fps_ratio_to_baseline"].items()))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
