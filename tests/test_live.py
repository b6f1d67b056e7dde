"""Live driving (styletalker.live) on the real driver video: the one-frame tracker agrees with the
offline tracker, the running retargeting ends where `styletalker animate` (whole clip) is, a video
source is paced at its own frame rate, and the live loop writes what it showed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from styletalker.live import LiveRetarget, LiveTracker, Tracked, VideoSource, camera_index, run_live

WINDOW = {"start": 1.0, "duration": 2.0, "fps": 10}  # the driver opens and closes the mouth here


@pytest.fixture(scope="module")
def live_tracked(driver_video):
    """The window tracked one frame at a time by LiveTracker, and by the offline tracker."""
    from styletalker.preprocess import track_video
    from styletalker.video import iter_frames

    tracker = LiveTracker(size=128)
    live = []
    try:
        for _idx, t, img in iter_frames(driver_video, **WINDOW):
            live.append(tracker.track(img, t))
    finally:
        tracker.close()
    offline = track_video(driver_video, size=128, smooth=0.0, progress=False, **WINDOW)
    return live, offline


def test_live_tracker_matches_the_offline_tracker(live_tracked):
    from styletalker.preprocess.geometry import rotation_angle_deg

    live, offline = live_tracked
    assert all(f is not None for f in live) and len(live) == len(offline["expression"]) >= 15
    e_live = np.stack([f.expression for f in live])
    assert live[0].expression_names == offline["expression_names"]
    assert np.abs(e_live - offline["expression"]).max() < 1e-4  # same landmarker, same settings
    jaw = offline["expression_names"].index("jawOpen")
    assert e_live[:, jaw].max() > 0.15 and e_live[:, jaw].min() < 0.05  # the mouth opens and closes
    R_live = np.stack([f.world_to_cam[:3, :3] for f in live])
    R_off = offline["world_to_cam"][:, :3, :3]
    assert rotation_angle_deg(np.swapaxes(R_live, 1, 2) @ R_off).max() < 1.0
    t_err = np.linalg.norm(np.stack([f.world_to_cam[:3, 3] for f in live]) - offline["world_to_cam"][:, :3, 3], axis=1)
    assert t_err.max() < 0.05  # dm


def test_running_retarget_ends_at_the_whole_clip_result(live_tracked, franck_avatar_work):
    from styletalker.animate import driving_sequence, load_scene

    live, _ = live_tracked
    scene = load_scene(franck_avatar_work)
    rt = LiveRetarget(scene)
    # names in another order: the live path maps channels by name
    perm = np.random.default_rng(0).permutation(len(live[0].expression_names))
    outs = [rt(Tracked(f.expression[perm], [f.expression_names[k] for k in perm], f.world_to_cam)) for f in live]
    track = {"expression": np.stack([f.expression for f in live]), "expression_names": live[0].expression_names,
             "world_to_cam": np.stack([f.world_to_cam for f in live]), "time": np.arange(len(live)) / 10.0}
    seq = driving_sequence(scene, track)
    expr, pose = outs[-1]
    np.testing.assert_allclose(expr, seq["expression"][-1], atol=1e-5)
    np.testing.assert_allclose(pose, seq["poses"][-1], atol=1e-5)
    # the first frame: no range seen yet -> the avatar's low end, at its reference pose
    np.testing.assert_allclose(outs[0][1], scene.ref_pose.numpy(), atol=1e-5)
    lo = scene.avatar.expr_low.numpy()
    assert np.abs(outs[0][0] - np.clip(lo, scene.avatar.expr_min.numpy(), scene.avatar.expr_max.numpy())).max() < 1e-5


def test_video_source_is_paced_at_its_frame_rate(driver_video):
    t_start = time.perf_counter()
    src = VideoSource(driver_video, duration=1.2).start()
    got, seq = [], 0
    try:
        while True:
            f = src.next(seq, timeout=5)
            if f is None:
                break
            seq = f.seq
            got.append((f.arrival, f.media_time))
            time.sleep(0.05)  # a slow consumer: it sees only the newest frame
    finally:
        src.stop()
    arrival, media = np.array(got).T
    assert src.fps == pytest.approx(25.0)
    assert src.published == 30 and len(got) < 30  # frames were skipped, not queued
    # published at the video's pace: frame t not before start + t (decoding alone takes ~0.1 s for
    # all 30 frames), and not much later (a busy machine may delay single frames)
    assert np.all(arrival - t_start > media - 0.01), arrival - t_start - media
    assert arrival[-1] - t_start < media[-1] + 1.0 and media[-1] > 1.1


def test_run_live_writes_what_it_showed(franck_avatar_work, driver_video, tmp_path):
    from styletalker.video import probe

    out = tmp_path / "live.mp4"
    res = run_live(franck_avatar_work, driver_video, out, duration=2.0, show_progress=False)
    info = probe(out)
    assert info.fps == pytest.approx(25.0)
    assert 40 <= res["frames"] <= 52 and info.frames == res["frames"]  # ~2 s of 25 fps video
    live = res["live"]
    assert live["tracked"] > 5 and live["frames"] > 5 and live["no_face"] == 0
    assert 0 < live["latency_ms_median"] < 2000 and live["fps"] > 0


def test_camera_index_and_missing_camera(franck_avatar_work, tmp_path, capsys):
    from styletalker.cli import main

    assert camera_index("0") == 0 and camera_index(3) == 3
    assert camera_index(str(tmp_path / "a.mp4")) is None
    assert main(["animate", str(franck_avatar_work), "--driver", "9", "-o", str(tmp_path / "c.mp4")]) == 2
    assert "camera 9 could not be opened" in capsys.readouterr().err
    assert not (tmp_path / "c.mp4").exists()


def test_pipelined_frames_show_their_own_expression(franck_avatar_work, driver_video):
    """With the Gaussians computed on their own thread (LiveGaussians), each image shown is the
    one of its own driver frame (expression and pose), as the plain forward of the avatar drawn
    (the live level of detail's pruned one at these views) draws it."""
    import torch

    from styletalker.animate import load_scene
    from styletalker.live import LiveDrive, LiveStats, live_frames

    scene = load_scene(franck_avatar_work)
    drive = LiveDrive(scene, VideoSource(driver_video, start=1.0, duration=1.5)).start()
    stats, shown = LiveStats(), []
    try:
        for f, img in live_frames(scene, drive, stats=stats, duration=1.5):
            shown.append((f, img))
    finally:
        drive.stop()
    assert drive.error is None and len(shown) >= 5
    s = stats.summary()
    assert s["pipeline"] and s["frames"] == len(shown) and stats.stage.computed >= len(shown)
    exprs = np.stack([f.expression for f, _ in shown])
    assert np.ptp(exprs, axis=0).max() > 0.05  # the frames differ, so a stale set of Gaussians would show
    assert scene.lod is not None  # the live level of detail was made (styletalker.lod, tests/test_lod.py)
    bg = torch.tensor(scene.background)
    pruned = 0
    for f, img in shown[:: max(1, len(shown) // 6)]:
        pose = torch.from_numpy(f.pose)
        av = scene.frozen_for(pose, live=True).avatar  # the pruned avatar where it covers the view
        pruned += av is not scene.avatar
        with torch.no_grad():
            ref = av.render(torch.from_numpy(f.expression), scene.camera(pose), bg)
        assert np.array_equal(img, ref.image.clamp(0, 1).numpy())
    assert pruned > 0
