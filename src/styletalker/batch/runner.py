"""``run_batch``: every row of a jobs file through its stages, on one executor, with a summary.

Rows are independent; within a row a stage starts when the stage it needs has finished
(:func:`styletalker.batch.stages.plan`), so a row's edits and renders can run side by side. A
stage's error fails its row (the stages it has running still end) and never the batch. The state
of each row is kept in ``OUT/<name>/batch/state.json`` and the summary of all rows in
``OUT/summary.json`` and ``OUT/summary.csv``, rewritten whenever a row ends.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..workdir import atomic_write_bytes, atomic_write_json, is_quiet, progress, read_json
from .executors import RayExecutor, make_executor
from .jobs import JobRow, load_jobs
from .stages import (BATCH_DIR, DEFAULT_RESOURCES, KINDS, Resources, Stage, check_finished, plan, read_attempts,
                     stage_device)

SUMMARY_COLUMNS = ["name", "status", "failed_stage", "error", "psnr", "ssim", "minutes", "cpu_minutes",
                   *(f"minutes_{k}" for k in KINDS), *(f"cpu_minutes_{k}" for k in KINDS), "retries", "work"]


@dataclass
class RowRun:
    """One row's progress through its stages during a batch run."""

    row: JobRow
    work: Path
    stages: list[Stage]
    records: dict[str, dict] = field(default_factory=dict)  # stage name -> what happened
    running: set[str] = field(default_factory=set)
    error: str | None = None
    failed_stage: str | None = None

    def done(self, name: str) -> bool:
        return self.records.get(name, {}).get("status") == "done"

    def ready(self) -> list[Stage]:
        if self.error is not None:
            return []
        return [s for s in self.stages if not self.done(s.name) and s.name not in self.running
                and (s.needs is None or self.done(s.needs))]

    @property
    def finished(self) -> bool:
        return not self.running and (self.error is not None or all(self.done(s.name) for s in self.stages))

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed" if not self.running else "failing"
        return "done" if self.finished else "pending"


def run_batch(jobs, out, *, ray: str | None = None, jobs_cpus: int | None = None, device: str = "auto",
              resources: dict[str, Resources] | None = None, retries: int = 3, show_progress: bool = True) -> dict:
    """Run every row of ``jobs`` (a jobs file, or a list of :class:`JobRow`) into ``out/<name>/``.

    ``ray``: a Ray address (``auto``, ``host:port``) to run the stages as Ray tasks; otherwise
    locally, ``jobs_cpus`` CPUs' worth of stages at a time (default: all cores; 1 = one stage at a
    time in this process). ``resources``: per stage kind (:data:`~.stages.KINDS`), what one stage
    asks for (default 1 CPU, no GPU; the CPUs are also its torch threads). ``retries``: how often a
    stage whose worker was lost is run again. Returns the summary (also written to
    ``out/summary.json`` and ``out/summary.csv``)."""
    rows = load_jobs(jobs) if isinstance(jobs, (str, Path)) else list(jobs)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    resources = {**DEFAULT_RESOURCES, **(resources or {})}
    t_start = time.time()
    runs = [_start_row(r, out, device, resources) for r in rows]
    executor = make_executor(ray, jobs_cpus, device, retries, resources)
    _warn_unplaceable(executor, resources, runs)
    total = sum(len(r.stages) for r in runs)
    bar = progress(total=total, initial=sum(len(r.records) for r in runs), desc="batch", unit="stage",
                   **({} if show_progress else {"disable": True}))
    say = (lambda m: None) if (is_quiet() or not show_progress) else bar.write
    say(f"batch: {len(runs)} row(s), {total} stage(s) on {executor.description}")
    for r in runs:
        if r.finished and r.error is not None:  # refused by the check of its finished stages
            say(_row_line(r))
    try:
        while not all(r.finished for r in runs):
            for r in runs:
                for st in r.ready():
                    res = resources[st.kind]
                    if not executor.has_room(res):
                        continue
                    r.running.add(st.name)
                    bar.set_postfix_str(_running(runs), refresh=True)
                    task = {"row": r.row.to_json(), "stage": asdict(st), "work": str(r.work),
                            "device": stage_device(device, res), "threads": res.threads}
                    executor.submit((r.row.name, st.name), task, res)
            for (name, stage), result, exc in executor.wait(timeout=0.5):
                r = next(x for x in runs if x.row.name == name)
                skipped = _stage_ended(r, stage, result, exc, t_start)
                bar.update(1 + skipped)
                bar.set_postfix_str(_running(runs), refresh=True)
                if r.finished:
                    say(_row_line(r))
                    _write_summary(out, runs, executor.description, t_start)
    finally:
        bar.close()
        executor.close()
    return _write_summary(out, runs, executor.description, t_start)


def _start_row(row: JobRow, out: Path, device: str = "auto", resources: dict[str, Resources] | None = None) -> RowRun:
    """A row's run, with the stages already finished (an earlier run) marked done; their earlier
    timings are kept from ``batch/state.json``. A finished stage folder whose needed stage is done
    is checked against what the row asks now (:func:`~.stages.check_finished`): a changed option
    or a changed input stage fails the row there, with the single command's message. (One whose
    needed stage is to run again is left to run after it, where the same rule applies.)"""
    resources = {**DEFAULT_RESOURCES, **(resources or {})}
    r = RowRun(row, out / row.name, plan(row))
    earlier = {}
    state = r.work / BATCH_DIR / "state.json"
    if state.is_file():
        try:
            earlier = read_json(state).get("stages", {})
        except (OSError, ValueError):
            pass
    for st in r.stages:
        if not st.is_done(r.work) or (st.needs is not None and not r.done(st.needs)):
            continue
        res = resources[st.kind]
        why = check_finished(st, row, r.work, stage_device(device, res), res.threads)
        if why is not None:
            r.records[st.name] = {"status": "failed", "error": why, "ran": False}
            r.error, r.failed_stage = why, st.name
            break
        r.records[st.name] = {**earlier.get(st.name, {}), "status": "done", "ran": False}
    return r


def _stage_ended(r: RowRun, stage: str, result: dict | None, exc: BaseException | None, t_start: float) -> int:
    """Record a stage's end in ``r``; returns how many of the row's stages will now never run."""
    r.running.discard(stage)
    attempts = [a for a in read_attempts(r.work, since=t_start) if a["stage"] == stage]
    rec = {"attempts": len(attempts), "hosts": sorted({a["host"] for a in attempts}),
           "nodes": sorted({a["node"] for a in attempts if a.get("node")}), "ran": True}
    if exc is not None:
        rec.update(status="failed", error=f"worker lost {len(attempts)} time(s), gave up: {exc}")
    else:
        rec.update(status="done" if result["ok"] else "failed", error=result["error"],
                   minutes=result["wall_s"] / 60, cpu_minutes=result["cpu_s"] / 60)
    r.records[stage] = rec
    skipped = 0
    if rec["status"] == "failed" and r.error is None:
        r.error, r.failed_stage = rec["error"], stage
        skipped = sum(1 for s in r.stages if s.name not in r.records and s.name not in r.running)
    atomic_write_json(r.work / BATCH_DIR / "state.json", _row_summary(r))
    return skipped


def _running(runs: list[RowRun]) -> str:
    names = [f"{r.row.name}/{s}" for r in runs for s in sorted(r.running)]
    done = sum(r.finished and r.error is None for r in runs)
    failed = sum(r.error is not None for r in runs)
    return f"rows {done} done, {failed} failed of {len(runs)}" + (f"; running {', '.join(names)}" if names else "")


def _metrics(r: RowRun) -> dict:
    from ..workfolder import WorkFolder

    p = WorkFolder(r.work).metrics()
    if not r.done("reconstruct") or not p.is_file():
        return {}
    m = read_json(p)
    return {"psnr": m.get("psnr"), "ssim": m.get("ssim"), "heldout_frames": len(m.get("heldout_frames", []))}


def _row_summary(r: RowRun) -> dict:
    """A row's line of the summary: status, error, held-out metrics, wall and CPU minutes (total
    and per stage kind, from the run that did each stage), retries, outputs, every stage's record."""
    totals = {}
    for key in ("minutes", "cpu_minutes"):
        per_kind = {k: sum(rec.get(key) or 0 for s, rec in r.records.items() if s.split(":")[0] == k) for k in KINDS}
        totals.update({key: sum(per_kind.values()), **{f"{key}_{k}": v for k, v in per_kind.items()}})
    return {"name": r.row.name, "status": r.status, "failed_stage": r.failed_stage, "error": r.error,
            **{"psnr": None, "ssim": None, **_metrics(r)}, **totals,
            "retries": sum(max(0, rec.get("attempts", 1) - 1) for rec in r.records.values() if rec.get("ran")),
            "work": str(r.work),
            "outputs": [str(s.output(r.work)) for s in r.stages if r.done(s.name) and s.kind in ("orbit", "animate")],
            "row": r.row.to_json(), "stages": r.records}


def _write_summary(out: Path, runs: list[RowRun], executor: str, t_start: float) -> dict:
    rows = [_row_summary(r) for r in runs]
    wall = (time.time() - t_start) / 60
    summary = {"executor": executor, "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_start)),
               "wall_minutes": wall, "rows_done": sum(x["status"] == "done" for x in rows),
               "rows_failed": sum(x["status"] == "failed" for x in rows), "rows": rows}
    atomic_write_json(out / "summary.json", summary)
    buf = io.StringIO()
    w = csv.DictWriter(buf, SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for x in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in x.items()})
    atomic_write_bytes(out / "summary.csv", buf.getvalue().encode())
    return summary


def _row_line(r: RowRun) -> str:
    s = _row_summary(r)
    if r.error is not None:
        return f"{r.row.name}: FAILED at {r.failed_stage}: {r.error}"
    psnr = f", held-out PSNR {s['psnr']:.2f} dB" if isinstance(s["psnr"], (int, float)) else ""
    return f"{r.row.name}: done ({s['minutes']:.1f} min of stages{psnr})"


def _warn_unplaceable(executor, resources: dict[str, Resources], runs: list[RowRun]) -> None:
    """Ray waits for a node with enough free resources; say so when no node of the cluster has them."""
    if not isinstance(executor, RayExecutor):
        return
    kinds = {s.kind for r in runs for s in r.stages}
    big = sorted(k for k in kinds if resources[k].cpus > executor.largest.cpus or
                 (resources[k].gpus > 0 and math.ceil(resources[k].gpus) > executor.largest.gpus))
    if big and not is_quiet():
        from ..workdir import log

        log(f"batch: no node of the cluster has the resources of the {', '.join(big)} stage(s) "
            f"(largest node: {executor.largest.cpus:g} CPUs, {executor.largest.gpus:g} GPUs); they wait for one")
