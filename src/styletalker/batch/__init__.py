"""Many videos at once: ``styletalker batch JOBS OUT`` (docs/scale.md).

    from styletalker.batch import run_batch, load_jobs
    summary = run_batch("jobs.yaml", "out/")                   # local: a process pool over the cores
    summary = run_batch("jobs.yaml", "out/", ray="auto")       # stages as tasks on a Ray cluster

Each row of the jobs file (:class:`JobRow`) runs preprocess -> reconstruct -> its edits -> orbit /
animate videos into ``out/<name>/``; finished stages are skipped on a rerun, and a row that fails
is reported in ``out/summary.json`` / ``out/summary.csv`` without stopping the others.
"""

from .jobs import JobRow, load_jobs
from .runner import run_batch
from .stages import DEFAULT_RESOURCES, KINDS, Resources, parse_resources, plan

__all__ = ["run_batch", "load_jobs", "JobRow", "plan", "KINDS", "Resources", "DEFAULT_RESOURCES", "parse_resources"]
