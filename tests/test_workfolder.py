"""The work-folder model (styletalker.workfolder) on real stages of the sample clip: input
fingerprints and stale stages, the one resume rule, old folders without fingerprints, the lock
(with real processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from styletalker.animate import load_scene
from styletalker.cli import main
from styletalker.edit.loop import run_edit
from styletalker.errors import OptionsChangedError, StaleStageError
from styletalker.reconstruct import run_reconstruct
from styletalker.workdir import read_json
from styletalker.workfolder import LOCK_FILE, WorkFolder

CLIP = ["--fps", "10", "--size", "128"]


def _copy(src, dst, *stages):
    for s in stages:
        shutil.copytree(src / s, dst / s)
    return dst


def test_paths_and_avatar_lookup(franck_avatar_work, tmp_path):
    wf = WorkFolder(franck_avatar_work)
    assert wf.preprocess == franck_avatar_work / "preprocess" and wf.edit("x") == franck_avatar_work / "edits" / "x"
    assert wf.avatar() == franck_avatar_work / "reconstruct" / "avatar.pt"
    from styletalker.errors import MissingStageError

    with pytest.raises(MissingStageError, match="--name nope"):
        wf.avatar("nope")
    with pytest.raises(MissingStageError, match="styletalker reconstruct"):
        WorkFolder(_copy(franck_avatar_work, tmp_path / "w", "preprocess")).avatar()
    # the training views come from the options reconstruction recorded
    views = wf.training_views()
    assert views.width == 128 and len(views.test_idx) == 4
    cam = views.camera(int(views.train_idx[0]))
    assert cam.width == 128 and cam.K.shape == (3, 3)


def test_stale_stages_after_preprocess_force(franck_avatar_work, franck_video, tmp_path, capsys):
    work = _copy(franck_avatar_work, tmp_path / "w", "preprocess", "reconstruct")
    run_edit(work, "make his skin green", name="g", iters=4, evaluate=False, progress_bars=False)
    wf = WorkFolder(work)
    # every stage records the fingerprints of its inputs in stage.json
    fp = {s: read_json(wf._folder(s) / "stage.json") for s in ("preprocess", "reconstruct", "edits/g")}
    assert fp["reconstruct"]["inputs"] == {"preprocess": fp["preprocess"]["fingerprint"]}
    assert fp["edits/g"]["inputs"] == {"reconstruct": fp["reconstruct"]["fingerprint"]}
    # a complete stage asked for with other options is refused, naming the option
    with pytest.raises(OptionsChangedError, match=r"complete run .*options\.iters: 4 -> 5.*--force"):
        run_edit(work, "make his skin green", name="g", iters=5, evaluate=False, progress_bars=False)
    assert main(["-q", "preprocess", str(franck_video), str(work), "--start", "2", "--duration", "2", *CLIP]) == 2
    assert "options.start: 10.0 -> 2.0" in capsys.readouterr().err

    # another clip over the same work folder: everything built from the old one is stale
    assert main(["-q", "preprocess", str(franck_video), str(work), "--start", "2", "--duration", "2", *CLIP,
                 "--force"]) == 0
    stale = r"reconstruct is stale: preprocess/ was rebuilt with other options: .*options\.start: 10\.0 -> 2\.0"
    with pytest.raises(StaleStageError, match=stale + r".*`styletalker reconstruct .* --force`"):
        run_reconstruct(work, preset="test", progress=False)
    for edit in (None, "g"):
        with pytest.raises(StaleStageError, match=stale):
            load_scene(work, edit)
    with pytest.raises(StaleStageError, match=stale):
        run_edit(work, "make his skin green", name="g", iters=4, evaluate=False, progress_bars=False)
    capsys.readouterr()
    assert main(["-q", "render", str(work), "--frame", "0", "-o", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "is stale" in err and "--force" in err and "Traceback" not in err

    # --force rebuilds the reconstruction; now the edit is the stale one
    run_reconstruct(work, preset="test", progress=False, force=True)
    assert len(load_scene(work).avatar.landmarks) == 478
    with pytest.raises(StaleStageError, match=r"edits/g is stale: reconstruct/ was rebuilt from a changed preprocess/.*"
                                              r"--prompt \"make his skin green\" --name g --force"):
        load_scene(work, "g")
    run_edit(work, "make his skin green", name="g", iters=4, evaluate=False, progress_bars=False, force=True)
    load_scene(work, "g")


def test_old_folders_without_fingerprints_still_work(franck_avatar_work, tmp_path, capsys):
    work = _copy(franck_avatar_work, tmp_path / "w", "preprocess", "reconstruct")
    for stage in ("preprocess", "reconstruct"):  # what an older StyleTalker wrote
        (work / stage / "config.json").unlink()
        st = read_json(work / stage / "stage.json")
        (work / stage / "stage.json").write_text(json.dumps({k: v for k, v in st.items()
                                                             if k not in ("fingerprint", "inputs")}))
    capsys.readouterr()
    load_scene(work)
    load_scene(work)
    run_reconstruct(work, preset="test", progress=False)  # complete: served as it is
    err = capsys.readouterr().err
    assert err.count("without input fingerprints") == 1, err
    out = run_edit(work, "make his skin green", name="g", iters=3, evaluate=False, progress_bars=False)
    assert read_json(out / "stage.json")["inputs"] == {"reconstruct": None}
    load_scene(work, "g")


_HOLD = """
import sys, time
from styletalker.workfolder import WorkFolder
with WorkFolder(sys.argv[1]).lock("test holder"):
    print("locked", flush=True)
    time.sleep(300)
"""


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "styletalker", "-q", *args], capture_output=True, text=True,
                          timeout=280)


def test_lock_second_process_exits_2_and_a_killed_one_does_not_block(franck_work, franck_video, tmp_path):
    work = _copy(franck_work, tmp_path / "w", "preprocess")
    args = ["preprocess", str(franck_video), str(work), "--start", "10", "--duration", "4", *CLIP]
    # a real stage holds the lock while it runs
    first = subprocess.Popen([sys.executable, "-m", "styletalker", "-q", "reconstruct", str(work), "--preset", "test"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (work / "reconstruct" / "config.json").is_file():
            assert first.poll() is None, first.stderr.read()
            assert time.time() - t0 < 120
            time.sleep(0.2)
        second = _cli(*args)
        assert second.returncode == 2, second.stderr
        assert f"in use by another styletalker process (PID {first.pid}: reconstruct)" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()  # SIGKILL: no cleanup code runs
        first.wait()
    assert (work / LOCK_FILE).read_text().startswith(f"PID {first.pid}")  # the stale PID is still written ...
    third = _cli(*args)  # ... but the kernel dropped the lock with the process
    assert third.returncode == 0, third.stderr
    # the same with a bare holder, in this test's own process group
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(work)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = _cli("edit", str(work), "--prompt", "green skin")
        assert r.returncode == 2 and f"PID {holder.pid}: test holder" in r.stderr, r.stderr
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with WorkFolder(work).lock("this test"):  # free again; re-entrant within a process
        with WorkFolder(work).lock("nested"):
            pass
        assert (work / LOCK_FILE).read_text().startswith(f"PID {os.getpid()}: this test")


# names of stage folders and files; only styletalker/workfolder.py (and workdir.py's STAGE_FILE) may spell them
_LAYOUT_NAMES = {"preprocess", "reconstruct", "edits", "renders", "mesh", "prior", "gaussians", "dataset", "previews",
                 "avatar.pt", "avatar.ply", "mesh.obj", "checkpoint.pt", "metrics.json", "config.json", "stage.json"}


def _path_literals(path):
    """(line, name) of every string literal that is joined onto a path (``x / "mesh"``) or that is
    a path ending in ``/<name>`` (``"*/metrics.json"``; no spaces: not help text) with a layout name."""
    import ast
    import io
    import tokenize

    out, prev = [], None
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.STRING and not tok.string.lower().startswith(("f", "rf", "fr", "b")):
            try:
                v = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):
                v = None
            if isinstance(v, str) and ((prev is not None and prev.string == "/" and v in _LAYOUT_NAMES)
                                       or ("/" in v and not any(c.isspace() for c in v)
                                           and v.rsplit("/", 1)[1] in _LAYOUT_NAMES)):
                out.append((tok.start[0], v))
        prev = tok
    return out


def test_layout_names_live_in_workfolder_only():
    """No module joins a stage folder's or file's name onto a path itself: WorkFolder and the
    constants of styletalker.workfolder are the one place naming them (issue 13)."""
    from pathlib import Path

    import styletalker

    root = Path(styletalker.__file__).parent
    allowed = {root / "workfolder.py", root / "workdir.py"}
    found = {f"{p.relative_to(root)}:{line}: {v!r}" for p in root.rglob("*.py") if p not in allowed
             for line, v in _path_literals(p)}
    assert not found, "\n".join(sorted(found))
    # and the check does catch one
    probe = Path(__file__).with_name("_layout_probe.txt")
    try:
        probe.write_text('p = out / "checkpoint.pt"\nq = rec / "mesh"\nd = {"mesh": 1}\n')
        assert _path_literals(probe) == [(1, "checkpoint.pt"), (2, "mesh")]
    finally:
        probe.unlink()


def test_reconstruct_layout_is_unchanged(franck_avatar_work):
    """The names WorkFolder gives are those of every work folder written so far (docs/FORMATS.md),
    and a real reconstruction wrote its files under them."""
    from styletalker.workfolder import CHECKPOINT_FILE, MESH_OBJ, METRICS_FILE

    wf = WorkFolder(franck_avatar_work)
    rec = franck_avatar_work / "reconstruct"
    assert (wf.mesh_stage, wf.prior_stage, wf.gaussians_stage, wf.reconstruct_renders, wf.metrics()) == (
        rec / "mesh", rec / "prior", rec / "gaussians", rec / "renders", rec / "metrics.json")
    assert wf.metrics("x") == franck_avatar_work / "edits" / "x" / "metrics.json"
    assert (CHECKPOINT_FILE, METRICS_FILE, MESH_OBJ) == ("checkpoint.pt", "metrics.json", "mesh.obj")
    for p in (wf.mesh_stage / CHECKPOINT_FILE, wf.mesh_stage / MESH_OBJ, wf.gaussians_stage / CHECKPOINT_FILE,
              wf.metrics(), wf.reconstruct_renders / "orbit.png", rec / "avatar.ply"):
        assert p.is_file(), p


def _same_camera(a, b):
    import torch

    return (torch.equal(a.K, b.K) and torch.equal(a.world_to_cam, b.world_to_cam)
            and (a.width, a.height) == (b.width, b.height))


def test_scene_and_training_views_share_one_camera_builder(franck_avatar_work, tmp_path):
    """animate's scene, at a training frame's pose, gives exactly that training view's camera (K,
    world_to_cam, size), at scale 1 and scaled; also when reconstruction trained at another size
    than preprocessing (the scene then frames with the training K and size)."""
    from styletalker.avatar import AvatarExtra, GaussianAvatar

    wf = WorkFolder(franck_avatar_work)
    scene, views = load_scene(franck_avatar_work), wf.training_views()
    assert len(views.train_idx) > 2
    for i in (views.neutral_index, int(views.train_idx[1]), int(views.train_idx[-1])):
        assert _same_camera(scene.camera(views.world_to_cam[i]), views.camera(i)), i
        big = scene.camera(views.world_to_cam[i], 2.0)
        assert _same_camera(big, views.camera(i, 2.0)) and big.width == 2 * views.width
    # an avatar trained at 96 px on the 128 px clip (its extra.data.size says so)
    work = _copy(franck_avatar_work, tmp_path / "w", "preprocess", "reconstruct")
    av = GaussianAvatar.load(WorkFolder(work).avatar())
    extra = dict(AvatarExtra.of(av).raw)
    extra["data"] = {**extra["data"], "size": 96}
    av.save(WorkFolder(work).avatar(), **extra)
    scene = load_scene(work)
    views = WorkFolder(work).training_views(GaussianAvatar.load(WorkFolder(work).avatar()))
    assert (views.width, views.height) == (96, 96) and (scene.width, scene.height) == (96, 96)
    for i in (views.neutral_index, int(views.train_idx[-1])):
        assert _same_camera(scene.camera(views.world_to_cam[i]), views.camera(i)), i
