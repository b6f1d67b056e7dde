"""The work folder as one object: its layout, avatar lookup, training views, input fingerprints,
the resume rule and the lock (docs/FORMATS.md, "Work folder rules").

* **Layout.** :class:`WorkFolder` and the constants of this module own every stage's folder and
  file name, inside stage folders too (``mesh/``, ``prior/``, ``gaussians/``, ``checkpoint.pt``,
  ``metrics.json``, ...); nothing else spells them (tests/test_workfolder.py checks it).
* **Records and fingerprints.** A stage writes ``<stage>/config.json`` before anything else: its
  options, and for each input stage that stage's fingerprint and options. Its own fingerprint is a
  hash of its options (minus :data:`NOT_COMPARED`) and its inputs' fingerprints; it goes into
  ``config.json`` and, when the stage completes, into ``stage.json``.
* **Stale stages.** Using a complete stage (as an input, or by rerunning it) compares the inputs
  it recorded with what those stages hold now; a difference raises :class:`StaleStageError`
  naming what changed and the ``--force`` command that rebuilds it. Folders written before
  fingerprints existed are taken as they are, with one note per folder and process.
* **One resume rule** (:meth:`WorkFolder.begin`): a stage folder whose record equals the request
  (same options, same inputs) is resumed from its checkpoints, or left alone when complete;
  one whose record differs is refused with the differing options named; ``--force`` discards
  it and starts over.
* **Lock.** :meth:`WorkFolder.lock`: one writing stage per work folder at a time (``fcntl.flock``
  on ``.styletalker.lock``, which holds the owner's PID); the kernel drops the lock when its
  process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import MissingStageError, OptionsChangedError, StaleStageError, StyleTalkerError, WorkFolderBusyError
from .workdir import STAGE_FILE, _json_default, atomic_write_json, is_complete, log, mark_complete, read_json

PREPROCESS = "preprocess"
RECONSTRUCT = "reconstruct"
EDITS = "edits"
RENDERS = "renders"
AVATAR_FILE = "avatar.pt"
CONFIG_FILE = "config.json"
LOCK_FILE = ".styletalker.lock"
# names inside a stage folder (docs/FORMATS.md); the on-disk layout is unchanged since format 1
CHECKPOINT_FILE = "checkpoint.pt"   # resumable state: reconstruct/mesh/, reconstruct/gaussians/, edits/NAME/
METRICS_FILE = "metrics.json"       # reconstruct/, edits/NAME/
MESH_DIR = "mesh"                   # reconstruct/mesh/: stage 1 (DMTet)
PRIOR_DIR = "prior"                 # reconstruct/prior/: multi-view prior views
GAUSSIANS_DIR = "gaussians"         # reconstruct/gaussians/: stage 2
MESH_OBJ = "mesh.obj"               # reconstruct/mesh/mesh.obj
AVATAR_PLY = "avatar.ply"           # reconstruct/avatar.ply
DATASET_DIR = "dataset"             # edits/NAME/dataset/: edited training images, strengths.json
PREVIEWS_DIR = "previews"           # edits/NAME/previews/
# (RENDERS also names reconstruct/renders/, the reconstruction's check images)
# top-level record keys never compared: the device (a run may resume on another one) and the description
# of the edit backend that ran (written once it is loaded; the options that choose it are compared)
NOT_COMPARED = ("device", "editor")
_RECORD_KEYS = ("fingerprint", "inputs")


def fingerprint(obj: Any) -> str:
    """A short hash of a JSON-able object (keys sorted, tuples as lists)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_fingerprint(record: dict) -> str:
    """A stage's fingerprint: its options (less :data:`NOT_COMPARED`) and its inputs' fingerprints."""
    return fingerprint({"options": {k: v for k, v in record.items() if k not in _RECORD_KEYS + NOT_COMPARED},
                        "inputs": {k: v.get("fingerprint") for k, v in record.get("inputs", {}).items()}})


def diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``"key.sub: old -> new"`` for every leaf that differs between two nested dicts (values
    compared as Python values: 10 == 10.0, tuples as lists)."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff(va, vb, f"{prefix}{k}.")
        elif (list(va) if isinstance(va, tuple) else va) != (list(vb) if isinstance(vb, tuple) else vb):
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def fill_missing(stored: dict, defaults: dict) -> dict:
    """``stored`` with the leaves it lacks taken from ``defaults``: a record written before an
    option existed ran with that option's default."""
    out = dict(stored)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = fill_missing(out[k], v)
    return out


def _changes(stored: dict, wanted: dict) -> list[str]:
    """What differs between two records, fingerprints left out when something readable differs."""
    strip = {k: v for k, v in stored.items() if k not in ("fingerprint",) + NOT_COMPARED}
    d = diff(strip, {k: v for k, v in wanted.items() if k not in ("fingerprint",) + NOT_COMPARED})
    named = [x for x in d if not x.split(":")[0].endswith(".fingerprint")]
    return [re.sub(r"^inputs\.([^.]+)\.(options\.)?", r"\1/ ", x) for x in (named or d)]


_WARNED: set[str] = set()
_HELD: dict[str, list] = {}  # lock path -> [file object, depth] held by this process
_HELD_GUARD = threading.Lock()


def _note_unknown(folder: Path) -> None:
    key = str(folder.resolve())
    if key not in _WARNED:
        _WARNED.add(key)
        log(f"note: {folder} was written without input fingerprints (an older StyleTalker); "
            "it is used as it is, whether or not its inputs changed since (rerun its stage with --force to be sure)")


class WorkFolder:
    """One work folder (``work/``): stage folders, avatars, training views, records, the lock."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"WorkFolder({str(self.root)!r})"

    # ------------------------------------------------------------------ layout
    @property
    def preprocess(self) -> Path:
        return self.root / PREPROCESS

    @property
    def reconstruct(self) -> Path:
        return self.root / RECONSTRUCT

    @property
    def edits(self) -> Path:
        return self.root / EDITS

    @property
    def renders(self) -> Path:
        return self.root / RENDERS

    def edit(self, name: str) -> Path:
        return self.edits / name

    # inside reconstruct/
    @property
    def mesh_stage(self) -> Path:
        return self.reconstruct / MESH_DIR

    @property
    def prior_stage(self) -> Path:
        return self.reconstruct / PRIOR_DIR

    @property
    def gaussians_stage(self) -> Path:
        return self.reconstruct / GAUSSIANS_DIR

    @property
    def reconstruct_renders(self) -> Path:
        return self.reconstruct / RENDERS

    def metrics(self, edit: str | None = None) -> Path:
        """``reconstruct/metrics.json``, or ``edits/<edit>/metrics.json``."""
        return (self.edit(edit) if edit else self.reconstruct) / METRICS_FILE

    @staticmethod
    def staging(folder: Path) -> Path:
        """Where a stage that appears all at once (preprocess) is built: ``<folder>.partial``."""
        return folder.with_name(folder.name + ".partial")

    def finished_edits(self) -> list[str]:
        if not self.edits.is_dir():
            return []
        return sorted(p.name for p in self.edits.iterdir() if is_complete(p) and (p / AVATAR_FILE).is_file())

    def _folder(self, stage: str) -> Path:
        if stage.startswith(EDITS + "/"):
            return self.edit(stage.split("/", 1)[1])
        return self.root / stage

    def _stage_name(self, folder: Path) -> str:
        return folder.name if folder.parent == self.root else f"{folder.parent.name}/{folder.name}"

    def command(self, stage: str) -> str:
        """The command that (re)builds ``stage`` ("preprocess", "reconstruct", "edits/NAME")."""
        if stage == PREPROCESS:
            src = ((self._record_or_none(self.preprocess)).get("source") or {}).get("path", "VIDEO")
            return f"styletalker preprocess {src} {self.root}"
        if stage == RECONSTRUCT:
            return f"styletalker reconstruct {self.root}"
        name = stage.split("/", 1)[1]
        prompt = self._record_or_none(self.edit(name)).get("prompt", "...")
        return f"styletalker edit {self.root} --prompt {json.dumps(prompt)} --name {name}"

    # ------------------------------------------------------------------ records and freshness
    @staticmethod
    def record(folder: Path) -> dict | None:
        """``folder/config.json`` (the stage's options and inputs), None when there is none; a
        damaged one, or one whose content no longer matches its fingerprint, is a DamagedFileError."""
        from .safeload import check, load_json_dict

        p = folder / CONFIG_FILE
        if not p.is_file():
            return None
        hint = "rerun its stage with --force"
        r = load_json_dict(p, "stage record", hint)
        if "fingerprint" in r:
            check(isinstance(r.get("inputs"), dict) and all(isinstance(v, dict) for v in r["inputs"].values())
                  and r["fingerprint"] == _record_fingerprint(r), p, "stage record",
                  "its options do not match its fingerprint", hint)
        return r

    def _record_or_none(self, folder: Path) -> dict:
        try:
            return self.record(folder) or {}
        except StyleTalkerError:
            return {}

    def describe(self, stage: str) -> dict:
        """What a downstream stage records of its input ``stage``: fingerprint and options."""
        folder = self._folder(stage)
        rec = self.record(folder) or {}
        try:
            fp = read_json(folder / STAGE_FILE).get("fingerprint")
        except (StyleTalkerError, AttributeError):
            fp = None
        return {"fingerprint": fp,
                "options": {k: v for k, v in rec.items() if k not in _RECORD_KEYS + NOT_COMPARED}}

    def check_fresh(self, folder: Path) -> None:
        """Raise :class:`StaleStageError` when a stage that ``folder`` was built from changed since."""
        rec = self.record(folder)
        if rec is None or "inputs" not in rec:
            if folder.name != PREPROCESS:  # preprocess's input is the video; nothing to check here
                _note_unknown(folder)
            return
        for up, was in rec["inputs"].items():
            self.check_fresh(self._folder(up))
            now = self.describe(up)
            if now["fingerprint"] is None:
                _note_unknown(self._folder(up))
                continue
            if now["fingerprint"] != was.get("fingerprint"):
                what = diff(was.get("options", {}), now["options"])
                if what:
                    why = f"with other options: {'; '.join(what[:6])}"
                else:
                    ups = list((self.record(self._folder(up)) or {}).get("inputs", {}))
                    why = "from a changed " + ", ".join(f"{u}/" for u in ups) if ups else "since"
                raise StaleStageError(
                    f"{folder} is stale: {up}/ was rebuilt {why}. "
                    f"Rebuild it with `{self.command(self._stage_name(folder))} --force`.")

    def require(self, stage: str, hint: str | None = None) -> Path:
        """The complete, up-to-date folder of ``stage``, or a clear error naming the command to run."""
        folder = self._folder(stage)
        if not is_complete(folder):
            raise MissingStageError(f"{folder} is missing or incomplete: run `{hint or self.command(stage)}` first.")
        self.check_fresh(folder)
        return folder

    def avatar(self, edit: str | None = None) -> Path:
        """The avatar file: ``reconstruct/avatar.pt``, or ``edits/<edit>/avatar.pt`` — complete and up to date."""
        if edit:
            folder = self.edit(edit)
            if not is_complete(folder):
                have = self.finished_edits()
                hint = f"; finished edits: {', '.join(have)}" if have else ""
                raise MissingStageError(
                    f"{folder} is missing or incomplete: run `styletalker edit {self.root} --prompt \"...\" "
                    f"--name {edit}` first{hint}")
            self.check_fresh(folder)
        else:
            folder = self.require(RECONSTRUCT)
        p = folder / AVATAR_FILE
        if not p.is_file():
            raise MissingStageError(f"{p} is missing: run `{self.command(self._stage_name(folder))} --force`.")
        return p

    # ------------------------------------------------------------------ the resume rule
    def begin(self, folder: Path, options: dict, inputs: tuple[str, ...] = (), *, force: bool = False,
              defaults: dict | None = None) -> dict | None:
        """Start (or resume) the stage in ``folder`` with ``options`` built from the stages ``inputs``.

        Returns None when ``folder`` is complete with the same record (nothing to do); otherwise
        the record, written to ``folder/config.json`` (kept when resuming). Raises
        :class:`OptionsChangedError` when ``folder`` holds a run (complete or not) with other
        options or other inputs, :class:`StaleStageError` when an input stage is itself stale.
        ``force`` discards whatever ``folder`` holds. ``defaults``: the options' default values; an
        option the stored record lacks (written before it existed) counts as its default.
        """
        ins = {}
        for up in inputs:
            self.require(up)
            ins[up] = self.describe(up)
        wanted = dict(options)
        wanted["inputs"] = ins
        wanted["fingerprint"] = _record_fingerprint(wanted)
        if force and folder.exists():
            shutil.rmtree(folder)
        if is_complete(folder):
            self.check_fresh(folder)  # built from inputs that changed since: stale, say so
        stored = self.record(folder) if folder.exists() else None
        if folder.exists() and stored is None and any(not p.name.startswith(".") for p in folder.iterdir()):
            if is_complete(folder):  # written before records existed: served as it is
                _note_unknown(folder)
                return None
            raise OptionsChangedError(
                f"{folder} holds an interrupted run without a record of its options (an older StyleTalker); "
                "add --force to start over")
        if stored is not None and "fingerprint" not in stored:
            if is_complete(folder):
                _note_unknown(folder)
                return None
            raise OptionsChangedError(f"{folder} holds an interrupted run of an older StyleTalker; add --force to "
                                      "start over")
        if stored is not None:
            d = _changes(fill_missing(stored, defaults) if defaults else stored, wanted)
            if d:
                done = is_complete(folder)
                raise OptionsChangedError(
                    f"{folder} holds {'a complete' if done else 'an interrupted'} run with other options or inputs "
                    f"({'; '.join(d[:6])}); "
                    + ("" if done else "rerun with the same options to resume, or ")
                    + "add --force to " + ("rebuild it" if done else "start over"))
            if is_complete(folder):
                return None
            return stored
        atomic_write_json(folder / CONFIG_FILE, wanted)
        return wanted

    @staticmethod
    def complete(folder: Path, record: dict, **info: Any) -> None:
        """Write ``folder/stage.json`` (last): ``info`` plus the record's fingerprint and inputs."""
        mark_complete(folder, **info, fingerprint=record["fingerprint"],
                      inputs={k: v["fingerprint"] for k, v in record.get("inputs", {}).items()})

    # ------------------------------------------------------------------ the lock
    @contextmanager
    def lock(self, what: str = "styletalker") -> Iterator[None]:
        """Hold the work folder's lock (re-entrant within a process); a second process gets
        :class:`WorkFolderBusyError` naming the holder's PID."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_FILE
        key = str(path.resolve())
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
        if held is None:
            f = open(path, "a+")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                owner = f.read().strip() or "unknown"
                f.close()
                raise WorkFolderBusyError(
                    f"{self.root} is in use by another styletalker process ({owner}); wait for it to finish, "
                    "or stop it, then run this again") from None
            f.seek(0)
            f.truncate()
            f.write(f"PID {os.getpid()}: {what}\n")
            f.flush()
            with _HELD_GUARD:
                _HELD[key] = held = [f, 1]
        try:
            yield
        finally:
            with _HELD_GUARD:
                held[1] -= 1
                last = held[1] == 0
                if last:
                    del _HELD[key]
            if last:
                held[0].close()  # closing the descriptor releases the flock

    # ------------------------------------------------------------------ training views
    def data_options(self, avatar=None) -> dict:
        """The data options reconstruction used: the avatar's ``extra.data`` (written by
        reconstruct), else ``reconstruct/config.json``; empty when neither records them."""
        from .avatar import AvatarExtra
        from .reconstruct.data import DATA_KEYS

        opts = AvatarExtra.of(avatar).data
        if opts:
            return opts
        cfg = (self.record(self.reconstruct) or {}).get("config") or {}
        return {k: v for k, v in (cfg.get("data") or {}).items() if k in DATA_KEYS}

    def training_views(self, avatar=None, **overrides):
        """The reconstruction's views (:class:`~styletalker.reconstruct.data.ReconData`): frames,
        targets, split, cameras and background built with the options reconstruction recorded
        (:meth:`data_options`); ``overrides`` that are not None win."""
        from .preprocess import load_dataset
        from .reconstruct.data import from_options

        opts = self.data_options(avatar)
        opts.update({k: v for k, v in overrides.items() if v is not None})
        return from_options(load_dataset(self.root), opts)


__all__ = ["WorkFolder", "fingerprint", "diff", "PREPROCESS", "RECONSTRUCT", "EDITS", "RENDERS", "AVATAR_FILE",
           "CONFIG_FILE", "LOCK_FILE", "CHECKPOINT_FILE", "METRICS_FILE", "MESH_DIR", "PRIOR_DIR", "GAUSSIANS_DIR",
           "MESH_OBJ", "AVATAR_PLY", "DATASET_DIR", "PREVIEWS_DIR"]
