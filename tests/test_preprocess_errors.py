"""Bad input through the CLI (exit 2, clear message, no complete-looking output), dropped
frames, resume after interruption, --force."""

from __future__ import annotations

import json

import numpy as np
import pytest

from styletalker.cli import main
from styletalker.errors import InputError
from styletalker.video import iter_frames, write_video
from styletalker.workdir import is_complete


@pytest.fixture(scope="module")
def franck_frames(franck_video):
    """12 real frames (10 fps from 10 s) of the sample video."""
    return [f for _, _, f in iter_frames(franck_video, start=10.0, fps=10, max_frames=12)]


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory, franck_frames, franck_video):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    (d / "notes.txt").write_text("plain text\n")
    (d / "empty.mp4").write_bytes(b"")
    import cv2

    cv2.imwrite(str(d / "frame.png"), franck_frames[0][..., ::-1])
    (d / "random.mp4").write_bytes(rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    (d / "truncated.webm").write_bytes(franck_video.read_bytes()[:30_000])
    write_video(d / "noise.mp4", [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(12)], 10)
    write_video(d / "flat.mp4", [np.full((96, 128, 3), 90, np.uint8) for _ in range(12)], 10)
    write_video(d / "two_faces.mp4", [np.concatenate([f, f[:, ::-1]], axis=1) for f in franck_frames], 10)
    write_video(d / "short.mp4", franck_frames[:5], 10)
    return d


CASES = [
    ("notes.mp4", [], "not a readable video file"),
    ("notes.txt", [], "not a readable video file"),
    ("frame.png", [], "is a still image"),
    ("empty.mp4", [], "file is empty"),
    ("random.mp4", [], "not a readable video file"),
    ("missing.mp4", [], "no such file"),
    ("truncated.webm", [], "truncated or corrupt"),
    ("noise.mp4", [], "no face found in any of the 12 frames"),
    ("flat.mp4", [], "no face found"),
    ("two_faces.mp4", [], "several faces found in 12 of 12 frames"),
    ("short.mp4", [], "video too short: only 5 frames"),
    ("short.mp4", ["--start", "100"], "no frames decoded in the selected window"),
]


@pytest.mark.parametrize("name,extra,message", CASES, ids=[f"{c[0]}{'+' if c[1] else ''}" for c in CASES])
def test_bad_input_cli(bad_videos, tmp_path, capsys, name, extra, message):
    work = tmp_path / "work"
    rc = main(["-q", "preprocess", str(bad_videos / name), str(work), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert "styletalker preprocess: error:" in err and message in err, err
    assert "Traceback" not in err
    assert not is_complete(work / "preprocess")
    assert not (work / "preprocess").exists() and not (work / "preprocess.partial").exists()


def test_min_frames_option(bad_videos, tmp_path, capsys):
    # 5 good frames pass with --min-frames 5 (and the face lost nowhere)
    work = tmp_path / "w"
    rc = main(["-q", "preprocess", str(bad_videos / "short.mp4"), str(work), "--min-frames", "5", "--size", "64",
               "--no-overlay"])
    assert rc == 0, capsys.readouterr().err
    assert is_complete(work / "preprocess")
    assert "kept 5/5 frames" in capsys.readouterr().out


def test_face_briefly_lost_frames_dropped(franck_frames, tmp_path, capsys):
    frames = [f.copy() for f in franck_frames]
    for k in (3, 7):
        frames[k][:] = 128
    video = tmp_path / "lost.mp4"
    write_video(video, frames, 10)
    work = tmp_path / "w"
    rc = main(["-q", "preprocess", str(video), str(work), "--size", "64", "--no-overlay"])
    assert rc == 0, capsys.readouterr().err
    man = json.loads((work / "preprocess" / "manifest.json").read_text())
    assert man["num_frames"] == 10 and man["decoded_frames"] == 12
    assert [d["frame_index"] for d in man["dropped"]] == [3, 7]
    with np.load(work / "preprocess" / "tracking.npz") as z:
        assert 3 not in z["frame_index"] and 7 not in z["frame_index"] and len(z["frame_index"]) == 10
    # too many lost frames: a clear error
    rc = main(["-q", "preprocess", str(video), str(tmp_path / "w2"), "--max-lost", "0.1"])
    assert rc == 2 and "face lost in 2 of 12 frames" in capsys.readouterr().err


def test_resume_after_interruption_and_force(carphone_video, tmp_path, monkeypatch):
    import styletalker.preprocess.pipeline as pl

    work = tmp_path / "w"
    kw = dict(max_frames=12, size=64, progress=False, overlay=False)
    real_mask = pl.person_mask
    calls = {"n": 0}

    def flaky_mask(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_mask(*a, **k)

    monkeypatch.setattr(pl, "person_mask", flaky_mask)
    with pytest.raises(KeyboardInterrupt):
        pl.run_preprocess(carphone_video, work, **kw)
    partial = work / "preprocess.partial"
    assert partial.is_dir() and not (work / "preprocess").exists()
    assert len(list((partial / "frames").glob("*.png"))) == 5

    # other options are refused (the partial run is kept, the differing option named)
    from styletalker.errors import OptionsChangedError

    with pytest.raises(OptionsChangedError, match=r"interrupted run .*options\.size: 64 -> 48.*--force"):
        pl.run_preprocess(carphone_video, work, **{**kw, "size": 48})
    assert len(list((partial / "frames").glob("*.png"))) == 5

    # resume: tracking is reused (not recomputed) and only the 7 missing frames are segmented
    def no_tracking(*a, **k):
        raise AssertionError("tracking should have been resumed from the checkpoint")

    monkeypatch.setattr(pl, "detect_faces", no_tracking)
    calls["n"] = 100
    out = pl.run_preprocess(carphone_video, work, **kw)
    assert calls["n"] == 107
    assert is_complete(out) and not partial.exists()
    assert len(list((out / "frames").glob("*.png"))) == 12
    assert not (out / "track.npz").exists()

    # --force redoes a complete stage with other options
    monkeypatch.undo()
    st = json.loads((out / "stage.json").read_text())
    out2 = pl.run_preprocess(carphone_video, work, force=True, max_frames=10, size=64, progress=False, overlay=False)
    st2 = json.loads((out2 / "stage.json").read_text())
    assert st["frames"] == 12 and st2["frames"] == 10
    assert len(list((out2 / "frames").glob("*.png"))) == 10


def test_track_video_bad_input(bad_videos):
    from styletalker.preprocess import track_video

    with pytest.raises(InputError, match="several faces"):
        track_video(bad_videos / "two_faces.mp4", start=0, duration=None, fps=None, max_frames=None, size=64,
                    progress=False)
    with pytest.raises(InputError, match="no face found"):
        track_video(bad_videos / "noise.mp4", start=0, duration=None, fps=None, max_frames=None, size=64,
                    progress=False)
