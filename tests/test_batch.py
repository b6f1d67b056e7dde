"""styletalker batch: jobs files, the local executors, resume, and a real local Ray cluster.

Three short real clips (franck with an edit and a driver, carphone, and a truncated copy of franck)
go through the whole pipeline at 64 px with the test preset. The Ray test starts a head and one
more node on 127.0.0.1, runs the CLI against it, kills the worker process in the middle of a
reconstruction and checks the retry, the failed row and that every result equals the local run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from styletalker.batch import JobRow, load_jobs, run_batch
from styletalker.batch.stages import plan, read_attempts
from styletalker.errors import InputError

PROMPT = "turn him into a marble statue"
EDIT = "turn-him-into-a-marble-statue"
ORBIT_FRAMES = 6
DRIVER_SECONDS = 1.0
JOBS_YAML = """
defaults: {{preset: test, size: 64, fps: 6, edit_iters: 10, orbit_frames: {orbit_frames}}}
jobs:
  - name: franck
    video: {franck}
    start: 10
    duration: 2.5
    prompts: ["{prompt}"]
    driver: {driver}
    driver_duration: {driver_seconds}
  - name: carphone
    video: {carphone}
    duration: 2.5
  - name: broken
    video: broken.webm
"""


@pytest.fixture(scope="module")
def jobs_file(tmp_path_factory, franck_video, carphone_video, driver_video):
    d = tmp_path_factory.mktemp("batch_jobs")
    (d / "broken.webm").write_bytes(franck_video.read_bytes()[:30_000])  # a truncated video
    p = d / "jobs.yaml"
    p.write_text(JOBS_YAML.format(franck=franck_video, carphone=carphone_video, driver=driver_video, prompt=PROMPT,
                                  orbit_frames=ORBIT_FRAMES, driver_seconds=DRIVER_SECONDS))
    return p


@pytest.fixture(scope="module")
def local_batch(jobs_file, tmp_path_factory):
    """The jobs run by the local executor, one stage at a time in this process (the process pool
    runs in the rerun test)."""
    out = tmp_path_factory.mktemp("batch_local")
    summary = run_batch(jobs_file, out, jobs_cpus=1, device="cpu", show_progress=False)
    return out, summary, jobs_file


def _rows(summary) -> dict:
    return {r["name"]: r for r in summary["rows"]}


def _frames(path) -> np.ndarray:
    from styletalker.video import iter_frames

    return np.stack([f for _, _, f in iter_frames(path)])


def _tensors(path) -> dict:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["state_dict"]


def assert_same_results(a: Path, b: Path, names=("franck", "carphone")) -> None:
    """Two batch outputs hold the same reconstructions, edits and videos (bit for bit)."""
    for name in names:
        for rel in ("reconstruct/avatar.pt", f"edits/{EDIT}/avatar.pt"):
            if not (a / name / rel).exists():
                continue
            ta, tb = _tensors(a / name / rel), _tensors(b / name / rel)
            assert ta.keys() == tb.keys()
            for k in ta:
                assert torch.equal(ta[k], tb[k]), f"{name}/{rel}: {k} differs"
        videos = sorted(p.name for p in (a / name / "renders").glob("*.mp4"))
        assert videos == sorted(p.name for p in (b / name / "renders").glob("*.mp4"))
        for v in videos:
            fa, fb = _frames(a / name / "renders" / v), _frames(b / name / "renders" / v)
            assert fa.shape == fb.shape and np.array_equal(fa, fb), f"{name}/renders/{v} differs"


# ---------------------------------------------------------------------------------------------
# jobs files


def test_csv_and_yaml_jobs_read_the_same(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "jobs.csv").write_text(
        "name,video,start,duration,size,preset,prompts,driver\n"
        "a,v/a.mp4,1.5,3,96,test,give him green skin | turn him into a marble statue,v/d.mp4\n"
        ",v/b.mp4,,,,,,\n")
    (tmp_path / "jobs.yaml").write_text(
        "- {name: a, video: v/a.mp4, start: 1.5, duration: 3, size: 96, preset: test, driver: v/d.mp4,\n"
        "   prompts: [give him green skin, turn him into a marble statue]}\n"
        "- {video: v/b.mp4}\n")
    rows = load_jobs(tmp_path / "jobs.csv")
    assert rows == load_jobs(tmp_path / "jobs.yaml")
    a, b = rows
    assert a.prompts == ("give him green skin", "turn him into a marble statue")
    assert a.video == str(tmp_path / "v" / "a.mp4") and a.driver == str(tmp_path / "v" / "d.mp4")
    assert (a.start, a.duration, a.size, a.preset) == (1.5, 3.0, 96, "test")
    assert a.preprocess_options() == {"start": 1.5, "duration": 3.0, "size": 96}
    # a row that leaves everything out: named after its video, every stage with its own defaults
    assert b.name == "b" and b.preprocess_options() == {} and b.prompts == () and b.driver is None
    assert [s.name for s in plan(a)] == [
        "preprocess", "reconstruct", "edit:give-him-green-skin", f"edit:{EDIT}", "orbit",
        "orbit:give-him-green-skin", f"orbit:{EDIT}", "animate", "animate:give-him-green-skin", f"animate:{EDIT}"]
    assert [s.name for s in plan(b)] == ["preprocess", "reconstruct", "orbit"]


@pytest.mark.parametrize("content, message", [
    ("name,video,colour\na,a.mp4,red\n", "unknown column(s) ['colour']"),
    ("name,video\na,a.mp4\na,b.mp4\n", "row 2: name 'a' is already used by row 1"),
    ("name,video,fps\na,a.mp4,fast\n", "row 1: fps: not a number: 'fast'"),
    ("name,video,size\na,a.mp4,-4\n", "row 1: size: must be a whole number > 0"),
    ("name,video,preset\na,a.mp4,huge\n", "unknown preset 'huge'"),
    ("name,start\na,3\n", "row 1: 'video' is required"),
    ("name,video\nmy video,a.mp4\n", "name 'my video': use letters"),
    ("name,video,prompts\na,a.mp4,give him a hat\n", "prompt 'give him a hat'"),
    ("name,video\nsummary.csv,a.mp4\n", "taken by the batch's own summary"),
    ("name,video,prompts\na,a.mp4,clown make-up | Clown make up\n", "give the same edit name"),
])
def test_bad_jobs_files_stop_before_anything_runs(tmp_path, content, message):
    from styletalker.cli import main

    jobs = tmp_path / "jobs.csv"
    jobs.write_text(content)
    with pytest.raises(InputError) as e:
        load_jobs(jobs)
    assert message in str(e.value)
    assert main(["-q", "batch", str(jobs), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_stage_resources_and_device():
    from styletalker.batch import Resources, parse_resources
    from styletalker.batch.stages import stage_device
    from styletalker.cli import main

    assert parse_resources("reconstruct=4:1") == ("reconstruct", Resources(4, 1))
    assert parse_resources("edit=0.5") == ("edit", Resources(0.5, 0)) and Resources(0.5, 0).threads == 1
    for bad in ("render=1", "edit", "edit=x", "edit=0", "edit=1:-1"):
        with pytest.raises(ValueError):
            parse_resources(bad)
    with pytest.raises(SystemExit) as e:
        main(["batch", "jobs.csv", "out", "--resources", "paint=1"])
    assert e.value.code == 2
    # --device auto: CUDA only for a stage that was given a GPU (Ray leaves GPUs visible to the others)
    assert stage_device("auto", Resources(1, 0)) == "cpu" and stage_device("auto", Resources(1, 1)) == "auto"
    assert stage_device("cuda", Resources(1, 0)) == "cuda" and stage_device("cpu", Resources(1, 1)) == "cpu"


# ---------------------------------------------------------------------------------------------
# local executors


def test_local_batch_finishes_good_rows_and_reports_the_corrupt_one(local_batch):
    out, summary, _ = local_batch
    rows = _rows(summary)
    assert [r["name"] for r in summary["rows"]] == ["franck", "carphone", "broken"]
    assert (summary["rows_done"], summary["rows_failed"]) == (2, 1)
    for name in ("franck", "carphone"):
        r = rows[name]
        assert r["status"] == "done" and r["error"] is None
        # a real (if tiny) reconstruction: held-out frames scored well above a blank image
        assert r["heldout_frames"] >= 1 and 13 < r["psnr"] < 40 and 0.3 < r["ssim"] <= 1
        assert r["minutes_preprocess"] > 0 and r["minutes_reconstruct"] > 0 and r["cpu_minutes"] > 0
        assert all(s["status"] == "done" and s["attempts"] == 1 for s in r["stages"].values())
    broken = rows["broken"]
    assert broken["status"] == "failed" and broken["failed_stage"] == "preprocess"
    assert "truncated or corrupt" in broken["error"] and broken["psnr"] is None
    assert list(broken["stages"]) == ["preprocess"]  # nothing after the failed stage ran
    # what was made: the edit, one orbit per avatar, one animation per avatar for the driven row
    f = out / "franck"
    assert (f / "edits" / EDIT / "stage.json").is_file()
    assert sorted(p.name for p in (f / "renders").glob("*.mp4")) == sorted(
        [f"animate_{EDIT}.mp4", "animate.mp4", f"orbit_{EDIT}.mp4", "orbit.mp4"])
    assert sorted(p.name for p in (out / "carphone" / "renders").glob("*.mp4")) == ["orbit.mp4"]
    assert len(_frames(f / "renders" / "orbit.mp4")) == ORBIT_FRAMES
    from styletalker.video import probe

    driver_fps = probe(_rows(summary)["franck"]["row"]["driver"]).fps
    assert abs(len(_frames(f / "renders" / "animate.mp4")) - DRIVER_SECONDS * driver_fps) <= 1
    # the edited avatar looks different from the reconstruction in its orbit
    assert np.abs(_frames(f / "renders" / "orbit.mp4").astype(int)
                  - _frames(f / "renders" / f"orbit_{EDIT}.mp4").astype(int)).mean() > 2
    # summary.csv says the same as summary.json
    import csv

    with open(out / "summary.csv") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [(c["name"], c["status"], c["failed_stage"]) for c in csv_rows] == [
        (r["name"], r["status"], r["failed_stage"] or "") for r in summary["rows"]]
    assert abs(float(csv_rows[0]["psnr"]) - rows["franck"]["psnr"]) < 1e-3
    assert json.loads((out / "summary.json").read_text())["rows_done"] == 2


def test_rerun_redoes_only_missing_stages_and_retries_a_killed_pool_worker(local_batch, tmp_path):
    """Delete one edit of a finished batch and run its good rows again with the process pool: only
    that edit and the videos made from it run; the pool worker running the edit is killed once and the
    edit is retried; the rebuilt outputs equal the first ones."""
    out0, summary0, jobs = local_batch
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    f = out / "franck"
    shutil.rmtree(f / "edits" / EDIT)
    for v in (f"orbit_{EDIT}.mp4", f"animate_{EDIT}.mp4"):
        (f / "renders" / v).unlink()
    t0 = time.time()
    killed = _kill_when(lambda: _attempt(f, f"edit:{EDIT}", t0), lambda a: (f / "edits" / EDIT).is_dir())
    rows = [r for r in load_jobs(jobs) if r.name != "broken"]  # (its failed preprocess would run again)
    summary = run_batch(rows, out, jobs_cpus=2, device="cpu", show_progress=False)
    killed.join(timeout=5)
    ran = [a["stage"] for a in read_attempts(f, since=t0)]
    assert sorted(set(ran)) == sorted([f"edit:{EDIT}", f"orbit:{EDIT}", f"animate:{EDIT}"])
    assert killed.pid is not None, "the edit's worker was never seen running"
    edit = _rows(summary)["franck"]["stages"][f"edit:{EDIT}"]
    assert edit["attempts"] == 2 and edit["status"] == "done" and ran.count(f"edit:{EDIT}") == 2
    assert _rows(summary)["franck"]["retries"] == 1
    assert [a["pid"] for a in read_attempts(f, since=t0) if a["stage"] == f"edit:{EDIT}"][0] == killed.pid
    # stages that did not run keep the timings of the run that did them
    assert _rows(summary)["franck"]["minutes_reconstruct"] == _rows(summary0)["franck"]["minutes_reconstruct"]
    assert [r["status"] for r in summary["rows"]] == ["done", "done"]
    assert not read_attempts(out / "carphone", since=t0)
    assert_same_results(out0, out, names=("franck",))


def _attempt(work: Path, stage: str, since: float) -> dict | None:
    return next((a for a in read_attempts(work, since=since) if a["stage"] == stage), None)


class _Killer(threading.Thread):
    """Waits for ``find()`` to return an attempt and ``ready(attempt)`` to hold, then SIGKILLs the
    attempt's process (once)."""

    def __init__(self, find, ready, timeout: float = 240):
        super().__init__(daemon=True)
        self.find, self.ready, self.timeout, self.pid = find, ready, timeout, None

    def run(self):
        end = time.time() + self.timeout
        while time.time() < end:
            a = self.find()
            if a is not None and self.ready(a):
                os.kill(a["pid"], signal.SIGKILL)
                self.pid = a["pid"]
                return
            time.sleep(0.05)


def _kill_when(find, ready) -> _Killer:
    k = _Killer(find, ready)
    k.start()
    return k


# ---------------------------------------------------------------------------------------------
# Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head and one more node, 1 CPU each, on 127.0.0.1, started by this test; skipped with
    the reason when Ray is missing or the cluster cannot start."""
    pytest.importorskip("ray", reason="ray is not installed (pip install -e \".[ray]\"); Ray tests skipped")
    from styletalker.batch.ray_local import local_cluster

    cm = local_cluster(nodes=2, cpus=1)
    try:
        cluster = cm.__enter__()
    except Exception as e:  # noqa: BLE001 - whatever stops Ray from starting here is the skip reason
        pytest.skip(f"a local Ray cluster could not start: {type(e).__name__}: {e}")
    try:
        yield cluster
    finally:
        cm.__exit__(None, None, None)


def test_ray_batch_equals_local_and_survives_a_killed_worker(ray_cluster, local_batch, tmp_path):
    cluster = ray_cluster
    (worker,) = cluster.worker_nodes
    out_local, summary_local, jobs = local_batch
    out = tmp_path / "out"
    t0 = time.time()
    f = out / "franck"
    # kill the Ray worker process in the middle of franck's reconstruction (its training has begun)
    killer = _kill_when(lambda: _attempt(f, "reconstruct", t0), lambda a: (f / "reconstruct" / "config.json").is_file())
    proc = subprocess.run([sys.executable, "-m", "styletalker", "-q", "batch", str(jobs), str(out),
                           "--ray", cluster.address, "--device", "cpu"],
                          capture_output=True, text=True, timeout=400)
    killer.join(timeout=5)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one row failed
    assert killer.pid is not None, "franck's reconstruction was never seen running"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["executor"].startswith(f"Ray cluster at {cluster.address}: 2 node(s), 2 CPU(s)")
    rows, local = _rows(summary), _rows(summary_local)
    assert [(r["name"], r["status"]) for r in summary["rows"]] == [
        ("franck", "done"), ("carphone", "done"), ("broken", "failed")]
    assert rows["broken"]["failed_stage"] == "preprocess"
    assert rows["broken"]["error"] == local["broken"]["error"] and "truncated or corrupt" in rows["broken"]["error"]
    assert "broken: failed at preprocess:" in proc.stdout
    # the killed reconstruction was run again by Ray, in another worker process, and finished
    rec = [a for a in read_attempts(f, since=t0) if a["stage"] == "reconstruct"]
    assert len(rec) == 2 and rec[0]["pid"] == killer.pid and rec[1]["pid"] != killer.pid
    assert rows["franck"]["stages"]["reconstruct"]["attempts"] == 2 and rows["franck"]["retries"] == 1
    # stages ran on both nodes of the cluster
    nodes = {a["node"] for name in ("franck", "carphone", "broken") for a in read_attempts(out / name, since=t0)}
    assert nodes == {cluster.head_node.node_id, worker.node_id}
    # and everything equals the local executor's results
    for name in ("franck", "carphone"):
        assert rows[name]["psnr"] == local[name]["psnr"] and rows[name]["ssim"] == local[name]["ssim"]
        assert set(rows[name]["stages"]) == set(local[name]["stages"])
    assert_same_results(out_local, out)


# ---------------------------------------------------------------------------------------------
# finished stages are checked like the single commands check them


def test_a_changed_row_is_reported_like_the_single_commands_do(franck_video, tmp_path):
    """A finished batch run again: unchanged, nothing runs. After a row's option changes, its
    finished preprocess is not taken as done: the row fails there with the option named (as
    `styletalker preprocess` refuses it); nothing is rebuilt or deleted. After preprocess is rebuilt
    with that option by its command, the batch's reconstruct is reported stale, naming what changed."""
    from styletalker.preprocess import run_preprocess

    row = JobRow(name="f", video=str(franck_video), start=10.0, duration=2.0, fps=6, size=48, preset="test",
                 orbit_frames=2)
    out = tmp_path / "out"
    first = run_batch([row], out, jobs_cpus=1, device="cpu", show_progress=False)
    assert first["rows"][0]["status"] == "done"
    f = out / "f"
    avatar = (f / "reconstruct" / "avatar.pt").read_bytes()

    t0 = time.time()
    again = run_batch([row], out, jobs_cpus=1, device="cpu", show_progress=False)
    assert again["rows"][0]["status"] == "done" and not read_attempts(f, since=t0)
    assert all(not s["ran"] for s in again["rows"][0]["stages"].values())

    changed = JobRow(**{**row.to_json(), "size": 40, "prompts": ()})
    s = run_batch([changed], out, jobs_cpus=1, device="cpu", show_progress=False)["rows"][0]
    assert (s["status"], s["failed_stage"]) == ("failed", "preprocess")
    assert "holds a complete run with other options" in s["error"] and "options.size: 48 -> 40" in s["error"]
    assert "delete" in s["error"] and not read_attempts(f, since=t0)
    assert (f / "reconstruct" / "avatar.pt").read_bytes() == avatar  # nothing rebuilt, nothing deleted

    run_preprocess(franck_video, f, force=True, progress=False, **changed.preprocess_options())
    s = run_batch([changed], out, jobs_cpus=1, device="cpu", show_progress=False)["rows"][0]
    assert (s["status"], s["failed_stage"]) == ("failed", "reconstruct")
    assert s["stages"]["preprocess"]["status"] == "done"
    assert "reconstruct is stale: preprocess/ was rebuilt with other options" in s["error"]
    assert "options.size: 48 -> 40" in s["error"] and "--force" in s["error"]
    assert not read_attempts(f, since=t0) and (f / "reconstruct" / "avatar.pt").read_bytes() == avatar
