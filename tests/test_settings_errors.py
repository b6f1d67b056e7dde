"""User-caused errors that used to end in tracebacks: an empty DMTet surface (mesh options that do
not fit the clip), a mesh rasterizer overrun (triangles too large for the image), and face
landmarks holding NaN (a damaged tracking file) are StyleTalkerErrors: exit 2, one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from styletalker import cli
from styletalker.errors import InputError, SettingsError, StyleTalkerError


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"styletalker {command}: error: "), err[-5:]
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_vanished_dmtet_surface_is_a_settings_error(franck_work, tmp_path, capsys):
    """A sphere start larger than the DMTet grid (mesh.extent < 1) has no surface at all: the real
    clip, the CLI, exit 2 with what to change (it used to be a RuntimeError traceback)."""
    work = tmp_path / "work"
    shutil.copytree(franck_work / "preprocess", work / "preprocess")  # not a reconstruction other tests made
    rc = cli.main(["-q", "reconstruct", str(work), "--preset", "test", "--set", "mesh.init=sphere",
                   "--set", "mesh.extent=0.5"])
    assert rc == 2
    msg = _one_line_error(capsys, "reconstruct")
    assert "DMTet surface vanished" in msg and "mesh.train.w_sym=0" in msg and "--force" in msg
    assert not (work / "reconstruct" / "stage.json").exists()


def test_mesh_rasterizer_overrun_is_a_settings_error(franck_avatar_work):
    """The stage-1 mesh of a real reconstruction seen by a real camera, with fewer face/pixel pairs
    allowed than its triangles cover (as a huge data.size would need)."""
    from styletalker.preprocess import load_dataset
    from styletalker.reconstruct.mesh_io import read_obj
    from styletalker.reconstruct.raster import rasterize

    ds = load_dataset(franck_avatar_work)
    v, f, _ = read_obj(franck_avatar_work / "reconstruct" / "mesh" / "mesh.obj")
    v, f = torch.from_numpy(v).float(), torch.from_numpy(f)
    i = ds.neutral_frame
    r = rasterize(v, f, None, ds.K[i], ds.world_to_cam[i], ds.width, ds.height, soft=False)
    assert r.alpha.sum() > 100  # the mesh is in view
    with pytest.raises(SettingsError, match="data.size"):
        rasterize(v, f, None, ds.K[i], ds.world_to_cam[i], ds.width, ds.height, soft=False, max_pairs=1000)


def test_nan_landmarks_are_a_clear_error(franck_avatar_work, tmp_path, capsys):
    """A tracking file with NaN landmarks (valid zip, valid CRCs) is refused when the work folder is
    read, naming the file and the array; the editors' FaceInfo refuses NaN as an InputError."""
    from styletalker.edit.regions import FaceInfo

    work = tmp_path / "work"
    shutil.copytree(franck_avatar_work, work, ignore=shutil.ignore_patterns("edits", "renders"))
    npz = work / "preprocess" / "tracking.npz"
    with np.load(npz) as z:
        tr = {k: z[k] for k in z.files}
    tr["landmarks3d"][3, 10] = np.nan
    np.savez(npz, **tr)
    rc = cli.main(["-q", "edit", str(work), "--prompt", "blue skin", "--iters", "2"])
    assert rc == 2
    msg = _one_line_error(capsys, "edit")
    assert "tracking.npz" in msg and "landmarks3d holds NaN" in msg

    lm = np.zeros((478, 2))
    lm[5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        FaceInfo(lm)
    assert issubclass(InputError, StyleTalkerError)


def test_set_values_follow_the_option_type(franck_work, tmp_path, capsys):
    """``--set prior.backend=none`` is the word "none" (the no-prior ablation; it used to become None
    and fail as "unknown prior backend None; choose from symmetric, svd, none"); a word or none
    for a number, and an option given twice with two values, is exit 2 before anything is written;
    ``--set seed=2`` sets the seed."""
    from styletalker.workdir import read_json

    work = tmp_path / "work"
    shutil.copytree(franck_work / "preprocess", work / "preprocess")
    for bad, words in ((["--set", "mesh.res=abc"], ("mesh.res=abc", "expects int")),
                       (["--set", "gauss.points=none"], ("gauss.points", "cannot be none")),
                       # an option given by --set and by its own flag with another value; the command's own
                       # arguments by --set (both used to end in a TypeError traceback)
                       (["--set", "seed=2", "--seed", "3"], ("seed=2", "contradicts")),
                       (["--set", "gauss_iters=5", "--gauss-iters", "7"], ("gauss.train.iters=5", "contradicts")),
                       (["--set", "device=cpu"], ("--set device", "own argument"))):
        assert cli.main(["-q", "reconstruct", str(work), "--preset", "test", *bad]) == 2
        msg = _one_line_error(capsys, "reconstruct")
        assert all(w in msg for w in words), msg
        assert not (work / "reconstruct").exists()
    assert cli.main(["-q", "reconstruct", str(work), "--preset", "test", "--set", "prior.backend=none",
                     "--set", "gauss.attr_bound=none", "--set", "seed=2", "--no-prior"]) == 0
    cfg = read_json(work / "reconstruct" / "config.json")
    assert cfg["config"]["prior"]["backend"] == "none" and cfg["config"]["gauss"]["attr_bound"] is None
    assert cfg["config"]["seed"] == 2
    assert not list((work / "reconstruct" / "prior").glob("views/*.png"))
