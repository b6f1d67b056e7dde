"""`styletalker render` / `styletalker animate` on the real reconstructed sample avatar."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletalker.cli import main


def _decode(path):
    from styletalker.video import iter_frames

    return np.stack([f for _, _, f in iter_frames(path)]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def tiny_edit(franck_avatar_work):
    from styletalker.edit.loop import run_edit

    return run_edit(franck_avatar_work, "blue skin", name="tiny", iters=6, progress_bars=False, evaluate=False)


def test_orbit_frame_and_ply(franck_avatar_work, tmp_path, capsys):
    from styletalker.avatar import GaussianAvatar
    from styletalker.preprocess import load_dataset
    from styletalker.render.ply import load_ply

    w = str(franck_avatar_work)
    assert main(["-q", "render", w, "--orbit", "--frames", "8", "--degrees", "90", "-o", str(tmp_path / "o.mp4")]) == 0
    fr = _decode(tmp_path / "o.mp4")
    assert len(fr) == 8
    assert np.abs(fr[2] - fr[0]).mean() > 0.01  # 45 degrees turned
    assert np.abs(fr[4] - fr[0]).mean() < 0.5 * np.abs(fr[2] - fr[0]).mean()  # back at the start
    assert main(["-q", "render", w, "--frame", "3", "-o", str(tmp_path / "f.png")]) == 0
    import cv2

    img = cv2.imread(str(tmp_path / "f.png"))[..., ::-1].astype(np.float32) / 255
    ds = load_dataset(franck_avatar_work)
    av = GaussianAvatar.load(franck_avatar_work / "reconstruct" / "avatar.pt")
    with torch.no_grad():
        ref = av.render(ds.expression[3], ds.camera(3), background=torch.ones(3)).image.clamp(0, 1).numpy()
    assert img.shape == ref.shape and np.abs(img - ref).max() < 1.5 / 255
    assert main(["-q", "render", w, "--ply", str(tmp_path / "a.ply")]) == 0
    assert load_ply(tmp_path / "a.ply")["means"].shape[0] == av.num_points
    assert main(["-q", "render", w, "--frame", "9999", "-o", str(tmp_path / "g.png")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_animate_real_avatar_and_edit(franck_avatar_work, tiny_edit, driver_video, tmp_path):
    w = str(franck_avatar_work)
    out = tmp_path / "a.mp4"
    assert main(["-q", "animate", w, "--driver", str(driver_video), "--max-frames", "8", "-o", str(out)]) == 0
    assert len(_decode(out)) == 8
    out2 = tmp_path / "b.mp4"
    assert main(["-q", "animate", w, "--edit", "tiny", "--driver", str(driver_video), "--max-frames", "8", "-o", str(out2)]) == 0
    a, b = _decode(out), _decode(out2)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1e-3  # the edited avatar is what moves
    # an avatar file can be given directly (the issue's `styletalker animate AVATAR ...`)
    out3 = tmp_path / "c.mp4"
    assert main(["-q", "animate", str(tiny_edit / "avatar.pt"), "--driver", str(driver_video), "--max-frames", "8",
                 "-o", str(out3)]) == 0
    assert np.abs(_decode(out3) - b).mean() < 0.01
    assert main(["-q", "animate", w, "--edit", "nope", "--driver", str(driver_video)]) == 2
