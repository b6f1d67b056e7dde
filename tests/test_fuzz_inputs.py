"""Fuzzing what the CLI reads: real files of a real work folder (the franck_avatar_work fixture)
truncated, with flipped bytes, replaced by garbage, or with counts / sizes inflated, each read
by the commands that use it (render, view's pre-check, evaluate, edit, animate).

Every case must end in exit 0 (a flip that changes a harmless value) or exit 2 with a one-line
``styletalker CMD: error: ...`` message; never a traceback, a hang or a memory blow-up. Cases
that cannot be harmless (truncation, garbage, inflated counts) must end in exit 2, and the
message must name the damaged file or its folder. All cases run in one child process under an
address-space limit (RLIMIT_AS) and a time limit; the driver at the bottom of this file swaps
each damaged file in, runs ``styletalker.cli.main`` in process, and puts the original back.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

MEMORY_LIMIT = 3 << 30  # bytes of address space for the child: a render needs < 2 GiB
TIME_LIMIT = 240  # seconds for all cases together (about 30 s on an idle 2-core machine)
SEED = 13

# file (relative to the work folder) -> the commands that read it
RENDER, VIEW, EVALUATE, EDIT, ANIMATE = "render", "view", "evaluate", "edit", "animate"
READERS = {
    "reconstruct/avatar.pt": [RENDER, VIEW],
    "reconstruct/stage.json": [RENDER],
    "reconstruct/config.json": [EVALUATE],
    "preprocess/stage.json": [RENDER],
    "preprocess/manifest.json": [RENDER],
    "preprocess/tracking.npz": [RENDER],
    "preprocess/canonical_mesh.npz": [RENDER],
    "reconstruct/metrics.json": [EVALUATE],
    "preprocess/frames/000000.png": [EVALUATE],
}


def _argv(cmd: str, work: Path, out: Path, driver: str) -> list[str]:
    return {
        RENDER: ["-q", "render", str(work), "--frame", "0", "-o", str(out / "view.png")],
        VIEW: ["-q", "view", str(work), "--port", "0"],
        EVALUATE: ["-q", "evaluate", str(work), "--no-write", "--lpips-model", str(out / "no-lpips")],
        EDIT: ["-q", "edit", str(work), "--prompt", "blue skin", "--iters", "2", "--name", "fuzz"],
        ANIMATE: ["-q", "animate", str(work), "--driver", driver, "--max-frames", "2", "-o", str(out / "a.mp4")],
    }[cmd]


# ---------------------------------------------------------------------------------------------
# damaged versions of a file


def _truncations(data: bytes) -> list[tuple[str, bytes]]:
    """Cuts that leave an unusable file (a JSON file without its last newline is still whole)."""
    return [(f"truncated at {k}", data[:k]) for k in sorted({0, 1, len(data) // 3, 2 * len(data) // 3, len(data) - 2})]


def _flips(data: bytes, rng: random.Random, n: int) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _npz_inflated(data: bytes, member: str, shape: tuple) -> bytes:
    """The same .npz with ``member``'s header claiming ``shape`` (valid zip, valid CRCs)."""
    from numpy.lib import format as npformat

    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename == member:
                f = io.BytesIO(raw)
                npformat.read_magic(f)
                _, fortran, dtype = npformat.read_array_header_1_0(f)
                head = io.BytesIO()
                npformat.write_array_header_1_0(head, {"shape": shape, "fortran_order": fortran,
                                                       "descr": npformat.dtype_to_descr(dtype)})
                raw = npformat.magic(1, 0) + head.getvalue() + raw[f.tell():]
            out.writestr(info.filename, raw)
    return buf.getvalue()


def _avatar_inflated(path: Path, **config) -> bytes:
    import torch

    blob = torch.load(path, weights_only=True)
    blob["config"].update(config)
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def _json_edited(data: bytes, edit) -> bytes:
    d = json.loads(data)
    edit(d)
    return json.dumps(d).encode()


def _inflations(rel: str, path: Path, data: bytes) -> list[tuple[str, bytes]]:
    big = 10**12
    if rel == "reconstruct/avatar.pt":
        return [("n_points 10^12", _avatar_inflated(path, n_points=big)),
                ("hidden width 10^7", _avatar_inflated(path, hidden=10**7))]
    if rel == "preprocess/tracking.npz":
        return [("K claims 10^12 frames", _npz_inflated(data, "K.npy", (big, 3, 3))),
                ("landmarks2d claims 10^12 x 478 x 2", _npz_inflated(data, "landmarks2d.npy", (big, 478, 2)))]
    if rel == "preprocess/canonical_mesh.npz":
        return [("faces claims 10^12 rows", _npz_inflated(data, "faces.npy", (big, 3)))]
    if rel == "preprocess/manifest.json":
        return [("image_size 10^9", _json_edited(data, lambda d: d.update(image_size=[10**9, 10**9]))),
                ("neutral_frame 10^12", _json_edited(data, lambda d: d.update(neutral_frame=big)))]
    return []


def _cases(work: Path, out: Path, driver: str) -> list[dict]:
    rng = random.Random(SEED)
    cases = []
    mut = out / "mutations"
    mut.mkdir()

    def add(rel, how, blob, cmds, must_fail):
        f = mut / f"{len(cases):04d}.bin"
        f.write_bytes(blob)
        for cmd in cmds:
            cases.append({"file": str(work / rel), "how": how, "blob": str(f), "cmd": cmd,
                          "argv": _argv(cmd, work, out, driver), "must_fail": must_fail})

    for rel, cmds in READERS.items():
        path = work / rel
        data = path.read_bytes()
        for how, blob in _truncations(data):
            add(rel, how, blob, cmds, True)
        for n in (1, 4, 32):
            add(rel, f"{n} random bit flips", _flips(data, rng, n), cmds, False)
        add(rel, "random garbage", rng.randbytes(len(data)), cmds, True)
        for how, blob in _inflations(rel, path, data):
            add(rel, how, blob, cmds, True)
    # edit and animate read the avatar before anything slow (tracking the driver, training)
    avatar = work / "reconstruct/avatar.pt"
    data = avatar.read_bytes()
    for how, blob in [("truncated at half", data[: len(data) // 2]), ("random garbage", rng.randbytes(len(data))),
                      *_inflations("reconstruct/avatar.pt", avatar, data)]:
        add("reconstruct/avatar.pt", how, blob, [EDIT, ANIMATE], True)
    # evaluate sizes its images from reconstruct/config.json
    cfg = work / "reconstruct/config.json"
    add("reconstruct/config.json", "data.size 10^9",
        _json_edited(cfg.read_bytes(), lambda d: d["config"]["data"].update(size=10**9)), [EVALUATE], True)
    return cases


def _run_cases(cases: list[dict], out: Path) -> list[dict]:
    spec = out / "cases.json"
    spec.write_text(json.dumps(cases))

    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {**os.environ, "STYLETALKER_RENDER_NO_EXT": "1",  # no wait on the shared extension cache
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, __file__, str(spec)], capture_output=True, text=True, timeout=TIME_LIMIT,
                          preexec_fn=limits, env=env)
    assert proc.returncode == 0, f"fuzz driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def fuzz_results(franck_avatar_work, driver_video, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    work = out / "work"
    shutil.copytree(franck_avatar_work, work, ignore=shutil.ignore_patterns("edits", "renders"))
    cases = _cases(work, out, str(driver_video))
    return cases, _run_cases(cases, out)


def test_damaged_inputs_are_clear_errors(fuzz_results):
    cases, results = fuzz_results
    assert len(results) == len(cases) + 1 > 100
    bad = []
    for c, r in zip(cases, results):
        what = f"{c['cmd']} with {Path(c['file']).relative_to(Path(c['file']).parents[1])} {c['how']}"
        err = r["stderr"].strip()
        if r["traceback"]:
            bad.append(f"{what}: traceback\n{r['traceback'][-1500:]}")
        elif r["rc"] not in (0, 2) or (c["must_fail"] and r["rc"] != 2):
            bad.append(f"{what}: exit {r['rc']}: {err[-500:]}")
        elif r["rc"] == 2:
            lines = err.splitlines()
            names = (Path(c["file"]).name, Path(c["file"]).parent.name)
            if (len(lines) != 1 or not lines[0].startswith(f"styletalker {c['cmd']}: error: ")
                    or "Traceback" in err or (c["must_fail"] and not any(n in err for n in names))):
                bad.append(f"{what}: unclear message: {err[-800:]}")
        if r["seconds"] > 30:
            bad.append(f"{what}: took {r['seconds']:.0f} s")
    assert not bad, f"{len(bad)} of {len(cases)} cases:\n" + "\n".join(bad[:20])
    # the undamaged work folder still renders (each original was put back)
    assert results[-1]["rc"] == 0


def test_refused_before_allocating(fuzz_results):
    """Inflated counts are refused by the size check, not by a failed allocation."""
    cases, results = fuzz_results
    inflated = [(c, r) for c, r in zip(cases, results) if "10^" in c["how"]]
    assert len(inflated) >= 10
    for c, r in inflated:
        assert r["rc"] == 2 and "MemoryError" not in r["stderr"] and "allocate" not in r["stderr"], (c["how"], r)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # flipped bits make NaNs
def test_ply_reader_refuses_damaged_files(tmp_path):
    """No command reads a .ply, but styletalker.render.ply.load_ply is public: the same damage."""
    import torch

    from styletalker.errors import InputError
    from styletalker.render.ply import load_ply, save_ply

    n = 50
    p = save_ply(tmp_path / "g.ply", torch.randn(n, 3), torch.randn(n, 4), torch.rand(n, 3) + 0.01,
                 torch.rand(n), torch.rand(n, 3))
    data = p.read_bytes()
    head = data[: data.index(b"end_header\n") + 11]
    rng = random.Random(SEED)
    damaged = [data[:k] for k in (0, 3, len(head) - 5, len(head) + 7, len(data) - 1)]
    damaged += [rng.randbytes(len(data)), b"ply\n" + rng.randbytes(5000), b"ply\n" + b"x" * (1 << 20)]
    damaged += [data.replace(b"element vertex 50", b"element vertex " + s) for s in (b"-5", b"5x")]
    for d in damaged:
        p.write_bytes(d)
        with pytest.raises(InputError, match=str(p.name)):
            load_ply(p)
    inflated = [data.replace(b"element vertex 50", b"element vertex 1000000000000"),
                data.replace(b"binary_little_endian", b"ascii").replace(b"element vertex 50", b"element vertex 999999999999")]
    for d in inflated:  # refused by comparing with the file size, before any allocation
        p.write_bytes(d)
        with pytest.raises(InputError, match="the header claims"):
            load_ply(p)
    for k in range(20):  # flips: a clear error or a result of the right shape
        p.write_bytes(_flips(data, rng, 1 + k))
        try:
            g = load_ply(p)
        except InputError:
            continue
        assert g["means"].shape == (n, 3)


def test_pickled_model_weights_are_refused(tmp_path):
    """A model folder (CLIP here; Instruct-Pix2Pix and SVD load the same way) whose weights are a
    pickled pytorch_model.bin instead of .safetensors is refused, not unpickled."""
    pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file
    from tiny_models import make_tiny_clip

    from styletalker.clip_metrics import ClipScorer
    from styletalker.errors import MissingModelError

    folder = make_tiny_clip(tmp_path / "clip")
    st = folder / "model.safetensors"
    torch.save(load_file(str(st)), folder / "pytorch_model.bin")
    ClipScorer(str(folder), device="cpu")  # loads while the .safetensors is there
    st.unlink()
    with pytest.raises(MissingModelError, match="could not load a CLIP model"):
        ClipScorer(str(folder), device="cpu")


# ---------------------------------------------------------------------------------------------
# the driver, run in the child process


def _drive(spec: Path) -> None:
    import contextlib
    import time
    import traceback

    from styletalker import cli
    from styletalker.viewer.app import Viewer

    Viewer.serve_forever = lambda self: None  # view: only its pre-check (load and frame the avatar)
    cases = json.loads(spec.read_text())
    cases.append({**cases[0], "file": None, "cmd": RENDER})  # the folder still works afterwards
    results = []
    for c in cases:
        target = Path(c["file"]) if c["file"] else None
        original = target.read_bytes() if target else None
        if target:
            target.write_bytes(Path(c["blob"]).read_bytes())
        err, tb, rc = io.StringIO(), None, None
        t0 = time.time()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = cli.main(c["argv"])
        except BaseException:  # noqa: BLE001 - what the test looks for
            tb = traceback.format_exc()
        finally:
            if target:
                target.write_bytes(original)
        results.append({"rc": rc, "stderr": err.getvalue(), "traceback": tb, "seconds": time.time() - t0})
    (spec.parent / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    _drive(Path(sys.argv[1]))
