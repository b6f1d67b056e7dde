"""Work-folder helpers: atomic writes with normal file permissions, the shared image writer, and a
CLI that stops quietly when its output pipe is closed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from styletalker.workdir import atomic_write_bytes, atomic_write_json, write_image


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_writes_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_json(tmp_path / "sub" / "b.json", {"k": 1})
        assert _mode(tmp_path / "a.bin") == 0o644 and _mode(tmp_path / "sub" / "b.json") == 0o644
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "c.bin", b"y")
        assert _mode(tmp_path / "c.bin") == 0o600
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.rglob(".*")]  # no temporaries left behind


def test_write_image_formats_and_rounding(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    rgb = rng.random((12, 16, 3)).astype(np.float32)
    # float numpy and torch tensors give the same PNG, rounded to the nearest 8-bit value, RGB order kept
    write_image(tmp_path / "a.png", rgb)
    write_image(tmp_path / "b.png", torch.from_numpy(rgb))
    a = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(a, cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)[..., ::-1])
    assert np.array_equal(a, np.floor(rgb * 255 + 0.5).astype(np.uint8))
    # out-of-range values are clipped; grey uint8 is stored as it is
    write_image(tmp_path / "c.png", np.full((4, 4, 3), 1.7, np.float32))
    assert (cv2.imread(str(tmp_path / "c.png")) == 255).all()
    grey = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    write_image(tmp_path / "g.png", grey)
    assert np.array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), grey)
    # .jpg by suffix (lossy: close, with red staying red)
    img = np.zeros((32, 32, 3), np.float32)
    img[..., 0] = 0.9
    write_image(tmp_path / "r.jpg", img)
    j = cv2.imread(str(tmp_path / "r.jpg"))[..., ::-1].astype(float) / 255
    assert np.abs(j - img).max() < 0.05


@pytest.mark.slow
def test_cli_closed_pipe_is_quiet(franck_avatar_work):
    p = subprocess.Popen([sys.executable, "-m", "styletalker", "evaluate", str(franck_avatar_work), "--no-write"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `| head` exiting before the command prints
    err = p.stderr.read().decode()
    rc = p.wait(timeout=300)
    assert rc == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
