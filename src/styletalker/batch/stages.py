"""The stages of one batch row, where their outputs go, and the function that runs one stage.

A row's work folder is ``OUT/<name>/`` (docs/FORMATS.md); the stages, in dependency order:

=================  ========================================  =======================
stage              output                                    needs
=================  ========================================  =======================
``preprocess``     ``preprocess/``                           --
``reconstruct``    ``reconstruct/``                          preprocess
``edit:E``         ``edits/E/`` (E = the prompt's edit name)  reconstruct
``orbit``          ``renders/orbit.mp4``                     reconstruct
``orbit:E``        ``renders/orbit_E.mp4``                   edit:E
``animate``        ``renders/animate.mp4`` (with a driver)   reconstruct
``animate:E``      ``renders/animate_E.mp4``                 edit:E
=================  ========================================  =======================

A stage is finished when its folder's ``stage.json`` says complete, or its video exists (videos
are written atomically); a finished stage is not run again. A finished stage folder is checked
first, by the rule of the single commands (:func:`check_finished`, ``WorkFolder.begin``): asked
with other options than it was built with, or built from an input stage that changed since, it
fails its row with the command's message instead of being taken as done. :func:`run_stage` is what a worker
runs (in this process, a process of the local pool, or a Ray task): it never raises for an error
of the stage itself but returns it, so only a lost worker reaches the executor as an exception.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .jobs import JobRow

KINDS = ("preprocess", "reconstruct", "edit", "orbit", "animate")
BATCH_DIR = "batch"  # OUT/<name>/batch/: state.json, attempts.jsonl, error.txt


@dataclass(frozen=True)
class Resources:
    """What one stage asks of the executor: CPU cores (also its torch threads) and GPUs."""

    cpus: float = 1
    gpus: float = 0

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


DEFAULT_RESOURCES = {k: Resources() for k in KINDS}


def stage_device(device: str, res: Resources) -> str:
    """The ``--device`` a stage runs with: ``auto`` means the CPU for a stage that asked for no
    GPU (Ray leaves the GPUs visible to such tasks, and nothing accounts for its use of them), and
    CUDA when available for one that did; ``cpu`` / ``cuda`` as given."""
    return "cpu" if device == "auto" and res.gpus == 0 else device


def parse_resources(spec: str) -> tuple[str, Resources]:
    """``KIND=CPUS[:GPUS]`` (``reconstruct=4:1``) -> (kind, Resources)."""
    kind, _, value = spec.partition("=")
    if kind not in KINDS or not value:
        raise ValueError(f"expected KIND=CPUS[:GPUS] with KIND one of {', '.join(KINDS)} (got {spec!r})")
    cpus, _, gpus = value.partition(":")
    try:
        r = Resources(float(cpus), float(gpus or 0))
    except ValueError:
        raise ValueError(f"{spec!r}: CPUS and GPUS must be numbers") from None
    if r.cpus <= 0 or r.gpus < 0:
        raise ValueError(f"{spec!r}: CPUS must be > 0 and GPUS >= 0")
    return kind, r


@dataclass(frozen=True)
class Stage:
    name: str  # "edit:marble-statue"
    kind: str  # "edit"
    edit: str | None = None
    needs: str | None = None

    def output(self, work: Path) -> Path:
        from ..workfolder import RENDERS, WorkFolder

        wf = WorkFolder(work)
        if self.kind == "preprocess":
            return wf.preprocess
        if self.kind == "reconstruct":
            return wf.reconstruct
        if self.kind == "edit":
            return wf.edit(self.edit)
        return wf.root / RENDERS / f"{self.kind}{'_' + self.edit if self.edit else ''}.mp4"

    def is_done(self, work: Path) -> bool:
        from ..workdir import is_complete

        out = self.output(work)
        return out.is_file() if out.suffix == ".mp4" else is_complete(out)


def edit_names(row: JobRow) -> list[tuple[str, str]]:
    """(edit name, prompt) of each prompt of ``row``; the name is the one `styletalker edit` gives it."""
    from ..edit.loop import slugify

    return [(slugify(p), p) for p in row.prompts]


def plan(row: JobRow) -> list[Stage]:
    """The stages of ``row`` in an order that respects their dependencies."""
    edits = [e for e, _ in edit_names(row)]
    stages = [Stage("preprocess", "preprocess"), Stage("reconstruct", "reconstruct", needs="preprocess")]
    stages += [Stage(f"edit:{e}", "edit", e, "reconstruct") for e in edits]
    renders = ["orbit"] + (["animate"] if row.driver else [])
    for kind in renders:
        stages.append(Stage(kind, kind, None, "reconstruct"))
        stages += [Stage(f"{kind}:{e}", kind, e, f"edit:{e}") for e in edits]
    return stages


@contextmanager
def _stage_environment(threads: int):
    """torch threads = the stage's CPUs, no progress bars or log lines (the batch has its own);
    restored afterwards (the in-process executor shares this process)."""
    import torch

    from ..workdir import is_quiet, set_quiet

    old_threads, old_quiet = torch.get_num_threads(), is_quiet()
    torch.set_num_threads(threads)
    set_quiet(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        set_quiet(old_quiet)


def _node_id() -> str | None:
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return None


def _record_attempt(work: Path, stage: str) -> dict:
    """Append this attempt (stage, pid, host, Ray node) to ``batch/attempts.jsonl``: a retried stage
    shows up twice, and a running stage's process can be found."""
    rec = {"stage": stage, "pid": os.getpid(), "host": socket.gethostname(), "node": _node_id(),
           "started": time.time()}
    path = work / BATCH_DIR / "attempts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def read_attempts(work: Path, since: float = 0.0) -> list[dict]:
    path = Path(work) / BATCH_DIR / "attempts.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by a killed worker
            continue
        if rec.get("started", 0) >= since:
            out.append(rec)
    return out


def _run(stage: Stage, row: JobRow, work: Path, device: str) -> None:
    if stage.kind == "preprocess":
        from ..preprocess import run_preprocess

        run_preprocess(row.video, work, progress=False, **row.preprocess_options())
    elif stage.kind == "reconstruct":
        from ..reconstruct import run_reconstruct

        run_reconstruct(work, preset=row.preset, progress=False, device=device)
    elif stage.kind == "edit":
        from ..edit.loop import run_edit

        prompt = dict(edit_names(row))[stage.edit]
        run_edit(work, prompt, name=stage.edit, progress_bars=False, device=device, **row.edit_options())
    elif stage.kind == "orbit":
        from ..animate import render_orbit

        render_orbit(work, stage.output(work), edit=stage.edit, show_progress=False, device=device,
                     **row.orbit_options())
    elif stage.kind == "animate":
        from ..animate import run_animate

        run_animate(work, row.driver, stage.output(work), edit=stage.edit, show_progress=False, device=device,
                    **row.animate_options())
    else:  # pragma: no cover
        raise ValueError(f"unknown stage kind {stage.kind!r}")


def check_finished(stage: Stage, row: JobRow, work: Path, device: str, threads: int) -> str | None:
    """For a finished stage folder (preprocess, reconstruct, edit): None when it is what ``row``
    asks now (same options, inputs unchanged), else why not: the message of the single command
    (options that differ, or the input stage that changed), plus how to redo it in a batch.

    It runs the stage's own function, which is a no-op for a complete folder with the same record
    and raises (:class:`~styletalker.errors.OptionsChangedError`,
    :class:`~styletalker.errors.StaleStageError`) otherwise; it never builds anything here."""
    from ..errors import StyleTalkerError
    from ..workdir import is_complete

    out = stage.output(work)
    if stage.kind not in ("preprocess", "reconstruct", "edit") or not is_complete(out):
        return None
    try:
        with _stage_environment(threads):
            _run(stage, row, work, device)
    except StyleTalkerError as e:
        return (f"{e} [batch: the row asks for other options or inputs than {out} was built with; rebuild it "
                f"with the command above, or delete {out}, then run the batch again]")
    return None


def run_stage(task: dict) -> dict:
    """Run one stage of one row (``task``: ``row``, ``stage``, ``work``, ``device``, ``threads``).

    Returns ``{"ok", "error", "error_kind", "wall_s", "cpu_s", "pid", "host", "node"}``; a
    :class:`~styletalker.errors.StyleTalkerError` (bad video, no face, ...) is ``error_kind``
    ``"input"`` with its message, anything else ``"crash"`` with the traceback in
    ``batch/error.txt``."""
    from ..errors import StyleTalkerError
    from ..workdir import atomic_write_bytes

    row = JobRow(**{**task["row"], "prompts": tuple(task["row"]["prompts"])})
    stage = Stage(**task["stage"])
    work = Path(task["work"])
    attempt = _record_attempt(work, stage.name)
    t0, c0 = time.time(), time.process_time()
    res = {"ok": True, "error": None, "error_kind": None}
    try:
        with _stage_environment(task["threads"]):
            _run(stage, row, work, task["device"])
    except StyleTalkerError as e:
        res = {"ok": False, "error": str(e), "error_kind": "input"}
    except Exception as e:  # a bug or an environment failure: keep the row's error, not the batch's
        atomic_write_bytes(work / BATCH_DIR / "error.txt", traceback.format_exc().encode())
        res = {"ok": False, "error": f"{type(e).__name__}: {e}", "error_kind": "crash"}
    res.update(wall_s=time.time() - t0, cpu_s=time.process_time() - c0, pid=attempt["pid"], host=attempt["host"],
               node=attempt["node"])
    return res
