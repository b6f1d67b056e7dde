"""Run many videos through the whole pipeline (docs/scale.md).

JOBS is a .csv or .yaml file with one row per video: name, video, and optionally start, duration,
fps, size (preprocess), preset (reconstruct), prompts (edits; '|'-separated in CSV), driver,
driver_start, driver_duration (animate), edit_iters, orbit_frames. Each row runs preprocess ->
reconstruct -> each edit -> orbit videos (and animations with a driver) into OUT/<name>/; finished
stages are skipped when the batch is run again. A row that fails (corrupt video, no face, ...) is
reported with its error and the others go on. The summary of every row (status, error, held-out
PSNR, minutes per stage) goes to OUT/summary.csv and OUT/summary.json.

Stages run locally (a process pool over the cores, or one at a time in this process with
--jobs 1) or, with --ray, as tasks of a Ray cluster: each stage asks for its --resources, Ray puts it
on a node where they are free, and a stage whose worker or node is lost is run again (--retries).
Exit status: 0 when every row finished, 1 when some failed, 2 for a bad jobs file or options.
"""

from __future__ import annotations

import argparse

from ._args import add_device_argument, positive_int


def _resources(s: str):
    from ..batch.stages import parse_resources

    try:
        return parse_resources(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nonneg_int(s: str) -> int:
    from ._args import _number

    return _number(int, s, lambda v: v >= 0, ">= 0")


def add_arguments(p):
    from ..batch.stages import DEFAULT_RESOURCES, KINDS

    p.add_argument("jobs", metavar="JOBS", help="jobs file, .csv or .yaml (one row per video)")
    p.add_argument("out", metavar="OUT", help="output folder: OUT/<name>/ per row, OUT/summary.csv and .json")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run the stages as tasks of a Ray cluster: auto (the cluster this machine belongs to, "
                        "as `ray start` set it up) or its address host:port; needs pip install -e \".[ray]\"")
    p.add_argument("-j", "--jobs", type=positive_int, default=None, metavar="N", dest="jobs_cpus",
                   help="local executor: N CPUs' worth of stages at a time (default: every core); "
                        "1 runs one stage at a time in this process")
    defaults = ", ".join(f"{k} {r.cpus:g}:{r.gpus:g}" for k, r in DEFAULT_RESOURCES.items())
    p.add_argument("--resources", type=_resources, action="append", default=[], metavar="KIND=CPUS[:GPUS]",
                   help=f"what one stage of KIND ({', '.join(KINDS)}) asks for; its CPUs are also its torch "
                        f"threads, and with --device auto only stages given a GPU use CUDA; repeatable "
                        f"(default {defaults})")
    p.add_argument("--retries", type=_nonneg_int, default=3, metavar="N",
                   help="run a stage again up to N times when its worker process or node is lost (default 3)")
    add_device_argument(p)


def run(args):
    from ..batch import run_batch

    summary = run_batch(args.jobs, args.out, ray=args.ray, jobs_cpus=args.jobs_cpus, device=args.device,
                        resources=dict(args.resources), retries=args.retries, show_progress=not args.quiet)
    for r in summary["rows"]:
        if r["status"] == "done":
            psnr = f"  PSNR {r['psnr']:.2f} dB" if isinstance(r["psnr"], (int, float)) else ""
            print(f"{r['name']}: done  {r['minutes']:.1f} min{psnr}")
        else:
            print(f"{r['name']}: {r['status']}" + (f" at {r['failed_stage']}: {r['error']}" if r["error"] else ""))
    print(f"{summary['rows_done']} of {len(summary['rows'])} row(s) done; summary: {args.out}/summary.csv, "
          f"{args.out}/summary.json")
    return 0 if summary["rows_done"] == len(summary["rows"]) else 1
