"""styletalker.video: probe, iter_frames windows / fps subsampling, write_video round trip."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from styletalker.errors import InputError
from styletalker.video import iter_frames, probe, write_video


def _frames(n=12, h=48, w=64):
    yy, xx = np.mgrid[0:h, 0:w]
    return [np.stack([(xx * 4 + i * 10) % 256, (yy * 5) % 256, np.full_like(xx, i * 20)], -1).astype(np.uint8)
            for i in range(n)]


def test_probe_real_videos(franck_video, carphone_video):
    info = probe(franck_video)
    assert (info.width, info.height) == (360, 288) and info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(199.9, abs=0.5) and info.frames == pytest.approx(4998, abs=15)
    info = probe(carphone_video)
    assert (info.width, info.height) == (176, 144) and info.fps == pytest.approx(29.97, abs=0.01)


def test_iter_frames_window_and_subsample(franck_video):
    out = list(iter_frames(franck_video, start=10.0, duration=2.0))
    assert len(out) == 50
    assert out[0][0] == 250 and out[0][1] == pytest.approx(10.0)
    assert out[-1][1] < 12.0 and out[0][2].shape == (288, 360, 3) and out[0][2].dtype == np.uint8
    sub = list(iter_frames(franck_video, start=10.0, duration=2.0, fps=10))
    assert len(sub) == 20
    t = np.array([s[1] for s in sub])
    assert np.allclose(np.diff(t), 0.1, atol=0.021)
    # subsampled frames are the same pixels as the full decode at the same index
    by_idx = {i: f for i, _, f in out}
    assert all(np.array_equal(f, by_idx[i]) for i, _, f in sub)
    assert len(list(iter_frames(franck_video, start=10.0, fps=10, max_frames=7))) == 7


def test_write_video_round_trip(tmp_path):
    frames = _frames()
    n = write_video(tmp_path / "a.mp4", frames, 10)
    assert n == 12 and not list(tmp_path.glob(".*tmp*"))
    info = probe(tmp_path / "a.mp4")
    assert (info.width, info.height, info.frames) == (64, 48, 12) and info.fps == pytest.approx(10.0)
    back = list(iter_frames(tmp_path / "a.mp4"))
    assert [i for i, _, _ in back] == list(range(12))
    assert np.allclose([t for _, t, _ in back], np.arange(12) / 10)
    err = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, (_, _, b) in zip(frames, back)])
    assert err < 6  # H.264 crf 20
    # window + subsample on the written file
    assert [i for i, _, _ in iter_frames(tmp_path / "a.mp4", start=0.3, duration=0.5, fps=4)] == [3, 6]
    # odd sizes are padded to even, float input is accepted
    write_video(tmp_path / "odd.mp4", [np.zeros((33, 47, 3), np.float32)] * 3, 5)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (48, 34)
    with pytest.raises(ValueError):
        write_video(tmp_path / "none.mp4", [], 10)
    assert not (tmp_path / "none.mp4").exists()


def test_subsample_when_timestamps_start_late(tmp_path):
    """A stream whose first timestamp is 2 s: fps subsampling must not emit every frame."""
    import av

    path = tmp_path / "late.mp4"
    c = av.open(str(path), mode="w")
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.time_base = Fraction(1, 25)
    for k, img in enumerate(_frames(50)):
        fr = av.VideoFrame.from_ndarray(img, format="rgb24")
        fr.pts = 50 + k  # starts at 2.0 s
        fr.time_base = Fraction(1, 25)
        for p in s.encode(fr):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    got = list(iter_frames(path, fps=5))
    t = np.array([g[1] for g in got])
    assert t[0] == pytest.approx(2.0, abs=0.05)
    assert len(got) == 10 and np.allclose(np.diff(t), 0.2, atol=0.05)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="is a folder"):
        probe(tmp_path)
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        list(iter_frames(tmp_path / "e.mp4"))
    (tmp_path / "t.mp4").write_text("not a video")
    with pytest.raises(InputError, match="not a readable video"):
        probe(tmp_path / "t.mp4")


def _write_rotated(path, upright_frames, display_rotation, fps=10):
    """A phone-style video: pixels stored turned, with a display-matrix rotation flag that tells
    players to turn them back by ``display_rotation`` degrees counter-clockwise."""
    import av

    k = int(display_rotation // 90)
    stored = [np.ascontiguousarray(np.rot90(f, -k)) for f in upright_frames]
    c = av.open(str(path), mode="w")
    s = c.add_stream("libx264", rate=fps)
    s.height, s.width = stored[0].shape[:2]
    s.pix_fmt = "yuv420p"
    s.options = {"crf": "12"}
    s.set_display_rotation(display_rotation)
    for f in stored:
        for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_flag_frames_come_upright(tmp_path, franck_video, rotation):
    upright = [f for _, _, f in iter_frames(franck_video, start=10.0, fps=10, max_frames=6)]
    path = tmp_path / f"phone{rotation}.mp4"
    _write_rotated(path, upright, rotation)
    info = probe(path)
    assert (info.height, info.width) == upright[0].shape[:2]  # displayed size, not stored size
    assert info.rotation == rotation % 360
    got = [f for _, _, f in iter_frames(path)]
    assert len(got) == len(upright)
    for a, b in zip(got, upright):
        assert a.shape == b.shape
        assert np.abs(a.astype(float) - b).mean() < 4.0  # codec loss only; a wrong turn is ~40


def test_rotated_phone_video_tracks_like_upright(tmp_path, franck_video):
    from styletalker.preprocess import track_video

    upright = [f for _, _, f in iter_frames(franck_video, start=10.0, fps=10, max_frames=10)]
    write_video(tmp_path / "upright.mp4", upright, 10, crf=12)
    _write_rotated(tmp_path / "phone.mp4", upright, -90)  # as an iPhone's portrait "rotate=90" tag
    a = track_video(tmp_path / "upright.mp4", size=128, progress=False, min_frames=5)
    b = track_video(tmp_path / "phone.mp4", size=128, progress=False, min_frames=5)
    assert len(a["expression"]) == len(b["expression"]) == 10
    # the same face, the same way up: landmarks within a couple of pixels, same head pose
    assert np.abs(a["landmarks2d"] - b["landmarks2d"]).mean() < 2.0
    ra, rb = a["world_to_cam"][:, :3, :3], b["world_to_cam"][:, :3, :3]
    cos = (np.einsum("nij,nij->n", ra, rb) - 1) / 2
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 5.0
