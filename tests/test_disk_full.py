"""A full disk during a write is a clear error (exit 2, the path and "disk full / file too large"
in one line) and leaves the previous outputs as they were (styletalker.workdir's atomic writers).

Two ways to run out of space, both on real stages run by the CLI in a child process:
RLIMIT_FSIZE (writes past the limit fail with EFBIG; SIGXFSZ ignored, as a full disk sends no
signal) and, where this process may mount one, a small tmpfs (a real ENOSPC).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(argv: list[str], fsize: int | None = None) -> subprocess.CompletedProcess:
    def limits():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "STYLETALKER_RENDER_NO_EXT": "1", "PYTHONPATH": os.pathsep.join(sys.path),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "styletalker", "-q", *argv], capture_output=True, text=True,
                          timeout=280, preexec_fn=limits, env=env)


def _assert_disk_full(proc, command: str, path: Path, why: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert err.startswith(f"styletalker {command}: error: cannot write {path}: {why}"), err
    assert "disk is full" in err
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.stem}") or ".tmp" in p.name]


def test_reconstruct_final_write_on_a_full_disk(franck_avatar_work, tmp_path):
    """reconstruct's final write of avatar.pt hits the limit: exit 2, the previous avatar.pt is
    untouched, the stage is not marked complete; with space again, the same command completes."""
    work = tmp_path / "work"
    shutil.copytree(franck_avatar_work, work, ignore=shutil.ignore_patterns("edits", "renders"))
    rec = work / "reconstruct"
    (rec / "stage.json").unlink()  # trained stages are complete: only the final outputs are written again
    before = {p: p.read_bytes() for p in (rec / "avatar.pt", rec / "avatar.ply", rec / "metrics.json")}
    proc = _cli(["reconstruct", str(work), "--preset", "test"], fsize=(rec / "avatar.pt").stat().st_size // 2)
    _assert_disk_full(proc, "reconstruct", rec / "avatar.pt", "File too large")
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not (rec / "stage.json").exists()
    proc = _cli(["reconstruct", str(work), "--preset", "test"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (rec / "stage.json").is_file()


def test_render_outputs_on_a_full_disk(franck_avatar_work, tmp_path):
    """render's image, orbit video and .ply export past the file-size limit: exit 2 each time,
    and the outputs of an earlier render are unchanged."""
    out = tmp_path / "out"
    png, mp4, ply = out / "view.png", out / "orbit.mp4", out / "g.ply"
    w = str(franck_avatar_work)
    runs = {png: ["render", w, "--frame", "0", "-o", str(png)],
            mp4: ["render", w, "--orbit", "--frames", "8", "-o", str(mp4)],
            ply: ["render", w, "--ply", str(ply)]}
    for path, argv in runs.items():
        assert _cli(argv).returncode == 0
    before = {p: p.read_bytes() for p in runs}
    for path, argv in runs.items():
        _assert_disk_full(_cli(argv, fsize=min(len(b) for b in before.values()) // 2), "render", path,
                          "File too large")
    assert {p: p.read_bytes() for p in runs} == before


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_render_on_a_full_tmpfs(franck_avatar_work, small_tmpfs):
    """A real ENOSPC: the tmpfs is filled up after a first render; the second one fails cleanly
    and the first image stays."""
    png = small_tmpfs / "view.png"
    argv = ["render", str(franck_avatar_work), "--frame", "0", "--yaw", "10", "-o", str(png)]
    assert _cli(argv).returncode == 0
    before = png.read_bytes()
    fd = os.open(small_tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the rest of the tmpfs
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    _assert_disk_full(_cli(argv), "render", png, "No space left on device")
    assert png.read_bytes() == before
