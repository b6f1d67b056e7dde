"""Resumable training loops: periodic checkpoints, Ctrl-C saves, RNG state restored on resume."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..workdir import log, progress, save_torch


def _numpy_rng_state() -> dict:
    """numpy's global RNG state as tensors and plain numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(st) -> None:
    if isinstance(st, tuple):  # checkpoints of earlier versions: np.random.get_state() as it is
        np.random.set_state(st)
        return
    np.random.set_state((st["kind"], st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"], st["cached"]))


def save_state(path: Path, **state) -> None:
    """A checkpoint of tensors, numbers, strings and containers of them only, so that
    :func:`load_state` can open it with ``torch.load(weights_only=True)``."""
    state = dict(state)
    state["rng"] = {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(), "python": random.getstate()}
    state["saved_at"] = time.time()
    save_torch(path, state)


def load_state(path: Path) -> dict | None:
    """The checkpoint at ``path`` (RNG states restored), or None when there is none or it cannot
    be read. Loaded with ``weights_only=True``: a checkpoint holding code (pickled objects) from
    someone else's work folder is refused, never run."""
    from ..safeload import load_torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        st = load_torch(path, "checkpoint")
        rng = st.get("rng")
        if rng:
            _set_numpy_rng_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
            random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in rng["python"]))
    except Exception as e:  # a torn/corrupt/foreign checkpoint: start the stage again
        log(f"warning: ignoring unreadable checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        return None
    return st


def resume_from(st: dict | None, opt, gen: torch.Generator, stage: str, total: int) -> tuple[int, dict]:
    """Restore the optimizer and sampling generator of a loaded checkpoint ``st`` (model weights
    are the caller's); returns ``(start_iteration, info)``, ``(0, {})`` without a checkpoint."""
    if st is None:
        return 0, {}
    opt.load_state_dict(st["optimizer"])
    gen.set_state(st["generator"])
    start = int(st["iteration"])
    log(f"{stage}: resuming at iteration {start}/{total}")
    return start, st.get("info", {})


class _SigintFlag:
    """Turn Ctrl-C into a flag checked between iterations (so a checkpoint is consistent)."""

    def __init__(self):
        self.flag = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.flag:  # second Ctrl-C: stop immediately
                    raise KeyboardInterrupt
                self.flag = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class deterministic:
    """Deterministic torch kernels inside the block (restored afterwards), so that a resumed run
    follows bit for bit the path of an uninterrupted one. Some CPU scatter/index kernels are
    otherwise order-dependent across threads."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self.prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        if self.enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)
        return self

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.prev[0], warn_only=self.prev[1])
        return False


def train_loop(
    name: str,
    n_iters: int,
    start: int,
    step: Callable[[int], dict],
    save: Callable[[int], None],
    *,
    ckpt_every: int = 200,
    show_progress: bool = True,
    hook: Callable[[str, int], bool] | None = None,
    deterministic_kernels: bool = True,
) -> int:
    """Run ``step(it)`` for it in [start, n_iters); ``save(done)`` every ``ckpt_every`` iterations,
    on Ctrl-C (then KeyboardInterrupt is re-raised) and at the end.

    ``hook(name, it)`` is called before every iteration; returning True simulates Ctrl-C (tests).
    """
    done = start
    kw = {} if show_progress else {"disable": True}
    bar = progress(total=n_iters, initial=start, desc=name, leave=False, **kw)
    try:
        with _SigintFlag() as sig, deterministic(deterministic_kernels):
            for it in range(start, n_iters):
                if sig.flag or (hook is not None and hook(name, it)):
                    save(done)
                    log(f"{name}: interrupted at iteration {done}/{n_iters}; checkpoint saved, run again to resume")
                    raise KeyboardInterrupt
                info = step(it)
                done = it + 1
                bar.update(1)
                if info:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in info.items()}, refresh=False)
                if ckpt_every and done % ckpt_every == 0 and done < n_iters:
                    save(done)
        save(done)
    finally:
        bar.close()
    return done
