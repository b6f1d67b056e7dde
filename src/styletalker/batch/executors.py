"""Where the stages of a batch run: in this process, in a local process pool, or as Ray tasks.

All three take the same calls from the runner (:mod:`styletalker.batch.runner`):

* ``has_room(resources)``: may a stage with these resources start now;
* ``submit(key, task, resources)``: start :func:`~styletalker.batch.stages.run_stage` on ``task``;
* ``wait(timeout)``: the ``(key, result, exception)`` of the stages that ended (``exception`` only
  when the worker itself was lost for good: a stage's own error is in its ``result``);
* ``close()``.

A lost worker (killed, out of memory, its node gone) is retried up to ``retries`` times: by Ray
itself (``max_retries``) or, in the local pool, by resubmitting to a fresh pool. Stages resume
from their checkpoints, so a retry redoes at most the work since the last one.
"""

from __future__ import annotations

import math
import os
from concurrent import futures

from ..errors import InputError
from .stages import Resources, run_stage


class InlineExecutor:
    """One stage at a time, in this process (``--jobs 1``)."""

    def __init__(self):
        self._ended: list = []
        self.description = "local, in this process"

    def has_room(self, res: Resources) -> bool:
        return not self._ended  # the runner sees each result before the next stage starts

    def submit(self, key, task: dict, res: Resources) -> None:
        self._ended.append((key, run_stage(task), None))

    def wait(self, timeout: float) -> list:
        ended, self._ended = self._ended, []
        return ended

    def close(self) -> None:
        pass


class PoolExecutor:
    """A pool of worker processes; stages start while their CPUs (and GPUs) fit in ``cpus`` (``gpus``)."""

    def __init__(self, cpus: int, gpus: int, retries: int, smallest: Resources):
        import multiprocessing

        self.capacity = Resources(cpus, gpus)
        self.retries = retries
        self._ctx = multiprocessing.get_context("spawn")  # torch and MediaPipe do not survive fork
        self._workers = max(1, math.floor(cpus / smallest.cpus))
        self._pool = self._new_pool()
        self._running: dict = {}  # future -> (key, task, resources, attempt)
        self._used = [0.0, 0.0]
        self.description = f"local process pool, {cpus} CPU(s)" + (f", {gpus} GPU(s)" if gpus else "")

    def _new_pool(self):
        return futures.ProcessPoolExecutor(max_workers=self._workers, mp_context=self._ctx)

    def _fit(self, res: Resources) -> tuple[float, float]:
        """A stage asking for more than the machine has runs alone (as much as there is)."""
        return min(res.cpus, self.capacity.cpus), min(res.gpus, self.capacity.gpus)

    def has_room(self, res: Resources) -> bool:
        c, g = self._fit(res)
        return self._used[0] + c <= self.capacity.cpus and self._used[1] + g <= self.capacity.gpus

    def submit(self, key, task: dict, res: Resources, attempt: int = 1) -> None:
        c, g = self._fit(res)
        self._used[0] += c
        self._used[1] += g
        if getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        self._running[self._pool.submit(run_stage, task)] = (key, task, res, attempt)

    def wait(self, timeout: float) -> list:
        done, _ = futures.wait(list(self._running), timeout=timeout, return_when=futures.FIRST_COMPLETED)
        ended = []
        for f in done:
            key, task, res, attempt = self._running.pop(f)
            c, g = self._fit(res)
            self._used[0] -= c
            self._used[1] -= g
            try:
                ended.append((key, f.result(), None))
            except futures.process.BrokenProcessPool as e:  # a worker process died
                if attempt <= self.retries:
                    self.submit(key, task, res, attempt + 1)
                else:
                    ended.append((key, None, e))
        return ended

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Each stage a Ray task with ``num_cpus`` / ``num_gpus`` from its resources; Ray queues them
    until a node has the resources free, and retries a task whose worker or node was lost."""

    def __init__(self, address: str, retries: int):
        try:
            import ray
        except ImportError:
            raise InputError("--ray needs Ray: pip install -e \".[ray]\" (or pip install ray)") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"--ray {address}: cannot connect to a Ray cluster ({e}); start one with "
                                 "`ray start --head` or give its address (host:port)") from None
        self.retries = retries
        self._remote = ray.remote(run_stage)
        self._running: dict = {}  # ObjectRef -> key
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        self.largest = max((Resources(n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in nodes),
                           key=lambda r: (r.cpus, r.gpus), default=Resources(0, 0))
        self.description = f"Ray cluster at {address}: {len(nodes)} node(s), {cpus:g} CPU(s), {gpus:g} GPU(s)"

    def has_room(self, res: Resources) -> bool:
        return True

    def submit(self, key, task: dict, res: Resources) -> None:
        ref = self._remote.options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=self.retries,
                                   retry_exceptions=False, name=f"{key[0]}/{key[1]}").remote(task)
        self._running[ref] = key

    def wait(self, timeout: float) -> list:
        if not self._running:
            return []
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout)
        ended = []
        for ref in ready:
            key = self._running.pop(ref)
            try:
                ended.append((key, self._ray.get(ref), None))
            except self._ray.exceptions.RayError as e:  # worker / node lost more than `retries` times
                ended.append((key, None, e))
        return ended

    def close(self) -> None:
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        if self._owns:
            self._ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A ``host:port`` nobody answers on fails now with a message (``ray.init`` would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": Ray resolves and reports these itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"--ray {address}: no Ray head answers there ({e}); start one with "
                         "`ray start --head --port PORT` or give its address (host:port)") from None


def make_executor(ray: str | None, jobs: int | None, device: str, retries: int, resources: dict):
    """``--ray ADDRESS`` -> Ray; ``--jobs 1`` -> in this process; otherwise a pool of ``jobs`` CPUs
    (default: every core)."""
    if ray:
        return RayExecutor(ray, retries)
    if device != "cpu":
        from ..device import resolve_device

        resolve_device(device)  # --device cuda without a GPU stops here, not in every row
    cpus = jobs or os.cpu_count() or 1
    if cpus == 1:
        return InlineExecutor()
    gpus = 0
    if device != "cpu":
        import torch

        gpus = torch.cuda.device_count()
    smallest = min(resources.values(), key=lambda r: r.cpus)
    return PoolExecutor(cpus, gpus, retries, smallest)
