"""Animation and orbit rendering: pose retargeting, the real driver video driving a crafted avatar."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from styletalker.animate import (load_scene, mean_pose, orbit_poses, render_orbit, render_view, retarget_poses,
                                 run_animate)
from styletalker.avatar import GaussianAvatar
from styletalker.errors import InputError
from styletalker.render import Camera

JAW = 25  # jawOpen in MediaPipe's blendshape order
MOUTH = (0.0, 0.45, 0.0)


def _rot_y(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def crafted_avatar(path, size=64):
    """A flat 'face' (Gaussians on the canonical plane z=0) whose mouth darkens with jawOpen and
    whose colour varies left to right; hand-set MLP_color weights, saved as a bare avatar file."""
    g = torch.linspace(-1, 1, 30)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    xyz = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.zeros(xx.numel())], -1)
    mouth = ((xyz - torch.tensor(MOUTH)).norm(dim=1) < 0.25).float()
    feats = torch.zeros(xyz.shape[0], 8)
    feats[:, 0] = mouth
    feats[:, 1] = xyz[:, 0]
    av = GaussianAvatar(xyz, xyz[::50].clone(), features=feats, feat_dim=8, n_freqs=2, hidden=32, init_scale=0.045,
                        init_opacity=0.97)
    net = av.color.net
    with torch.no_grad():
        for m in (net[0], net[2], net[4]):
            m.weight.zero_()
            m.bias.zero_()
        net[0].weight[0, 0] = 10.0
        net[0].weight[0, 8 + JAW] = 10.0
        net[0].bias[0] = -10.0  # h0 = silu(10 (mouth + jawOpen - 1)): > 0 only on the mouth, grows with jawOpen
        net[0].weight[1, 1] = 2.0  # h1 = silu(2 x)
        net[2].weight[0, 0] = 1.0
        net[2].weight[1, 1] = 1.0
        net[4].weight[:, 0] = -3.0
        net[4].weight[0, 1] = 1.5
        net[4].bias[:] = torch.tensor([0.0, 0.4, 0.8])
    cam = Camera.from_fov(size, size, 30.0)
    pose = torch.eye(4)
    pose[2, 3] = 4.5
    av.save(path, camera={"K": cam.K.tolist(), "width": size, "height": size, "ref_pose": pose.tolist(),
                          "neutral_expression": [0.0] * 52}, background=[1.0, 1.0, 1.0])
    return path


@pytest.fixture(scope="module")
def avatar_file(tmp_path_factory):
    return crafted_avatar(tmp_path_factory.mktemp("crafted") / "avatar.pt")


def test_retarget_poses():
    ref_a = np.eye(4)
    ref_a[:3, 3] = [0.1, 0.2, 5.0]
    D = np.repeat(np.eye(4)[None], 3, 0)
    D[:, :3, 3] = [0.0, 0.0, 2.5]
    D[1, :3, :3] = _rot_y(10)
    D[2, :3, :3] = _rot_y(-10)
    D[2, 0, 3] = 0.2
    out = retarget_poses(D, ref_a, "relative")
    ref_d = mean_pose(D)
    for t in range(3):
        # the avatar turns by exactly the driver's rotation relative to its mean pose
        assert np.allclose(out[t, :3, :3] @ ref_a[:3, :3].T, D[t, :3, :3] @ ref_d[:3, :3].T, atol=1e-9)
        # translations are scaled by the depth ratio (5.0 / 2.5)
        assert np.allclose(out[t, :3, 3], ref_a[:3, 3] + (D[t, :3, 3] - ref_d[:3, 3]) * 2.0, atol=1e-9)
    assert np.allclose(retarget_poses(D[:1].repeat(4, 0), ref_a), ref_a)  # a still driver keeps the avatar still
    rot = retarget_poses(D, ref_a, "rotation")
    assert np.allclose(rot[:, :3, 3], ref_a[:3, 3])
    assert np.allclose(retarget_poses(D, ref_a, "none"), ref_a)
    with pytest.raises(InputError):
        retarget_poses(D, ref_a, "wobble")


def test_orbit_poses():
    ref = np.eye(4)
    ref[2, 3] = 4.0
    pivot = np.array([0.0, 0.0, 0.5])
    P = orbit_poses(ref, pivot, frames=8, degrees=60)
    assert np.allclose(P[0], ref) and np.allclose(P[4], ref, atol=1e-9)
    yaw2 = math.degrees(math.atan2(P[2][0, 2], P[2][0, 0]))
    assert yaw2 == pytest.approx(30.0)
    for M in P:  # the pivot stays put
        assert np.allclose(M[:3, :3] @ pivot + M[:3, 3], ref[:3, :3] @ pivot + ref[:3, 3])
    T = orbit_poses(ref, pivot, frames=5, degrees=90, mode="turn")
    yaws = [math.degrees(math.atan2(M[0, 2], M[0, 0])) for M in T]
    assert yaws == pytest.approx([-45, -22.5, 0, 22.5, 45])


def _decode(path):
    from styletalker.video import iter_frames

    return np.stack([f for _, _, f in iter_frames(path)]).astype(np.float32) / 255.0


def test_animate_follows_the_driver(avatar_file, driver_video, tmp_path):
    out = tmp_path / "anim.mp4"
    res = run_animate(avatar_file, driver_video, out, duration=3.0, fps=10, show_progress=False)
    frames = _decode(out)
    assert res["frames"] == res["tracked_frames"] + res["held_frames"] == len(frames) == 30
    assert res["fps"] == pytest.approx(10.0)
    jaw = np.asarray(res["jaw_open"])
    assert jaw.max() > 0.15 and jaw.min() < 0.05  # the driver opens and closes the mouth
    scene = load_scene(avatar_file)
    K = scene.K.numpy()
    mouth = []
    for f, P in zip(frames, res["poses"]):
        pc = P[:3, :3] @ np.array(MOUTH) + P[:3, 3]
        u, v = K[0, 0] * pc[0] / pc[2] + K[0, 2], K[1, 1] * pc[1] / pc[2] + K[1, 2]
        mouth.append(f[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3].mean())
    corr = np.corrcoef(jaw, np.asarray(mouth))[0, 1]
    assert corr < -0.8, corr  # the avatar's mouth darkens exactly when the driver's jaw opens
    # the head follows the driver's motion (relative pose), and stays put with --pose none
    assert np.ptp(res["poses"][:, 0, 3]) > 1e-3 or np.ptp(res["poses"][:, 0, 0]) > 1e-4
    still = run_animate(avatar_file, driver_video, tmp_path / "still.mp4", duration=1.0, fps=10, pose="none",
                        side_by_side=True, show_progress=False)
    assert np.allclose(still["poses"], still["poses"][0])
    sbs = _decode(tmp_path / "still.mp4")
    assert sbs.shape[2] == 128 and len(sbs) == still["frames"]  # driver crop | avatar


def test_orbit_and_single_view(avatar_file, tmp_path):
    out = tmp_path / "orbit.mp4"
    res = render_orbit(avatar_file, out, frames=12, degrees=60, show_progress=False)
    fr = _decode(out)
    assert len(fr) == res["frames"] == 12
    turned = np.abs(fr[3] - fr[0]).mean()
    back = np.abs(fr[6] - fr[0]).mean()
    assert turned > 0.02 and back < 0.3 * turned  # frames differ across angles; the loop returns
    png = tmp_path / "view.png"
    r = render_view(avatar_file, png, yaw=20.0)
    import cv2

    img = cv2.imread(str(png))[..., ::-1].astype(np.float32) / 255.0
    assert img.shape == (64, 64, 3) and np.abs(img - r["image"]).max() < 1.5 / 255
    r0 = render_view(avatar_file, tmp_path / "v0.png")
    assert np.abs(r0["image"] - r["image"]).mean() > 0.01
    with pytest.raises(InputError, match="work folder"):
        render_view(avatar_file, tmp_path / "x.png", frame=0)
    with pytest.raises(InputError, match="png"):
        render_view(avatar_file, tmp_path / "x.gif")


def test_cli_errors(avatar_file, tmp_path, capsys):
    from styletalker.cli import main

    assert main(["animate", str(tmp_path / "nothing"), "--driver", str(avatar_file)]) == 2
    assert "no such work folder" in capsys.readouterr().err
    assert main(["animate", str(avatar_file), "--driver", str(avatar_file), "-o", str(tmp_path / "a.mp4")]) == 2
    assert "not a readable video" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists()
    (tmp_path / "work").mkdir()
    assert main(["render", str(tmp_path / "work"), "--orbit"]) == 2
    assert "styletalker reconstruct" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "work"), "--orbit", "--edit", "statue"]) == 2
    assert "styletalker edit" in capsys.readouterr().err
    assert main(["render", str(avatar_file), "--orbit", "--frames", "4", "-o", str(tmp_path / "o.mp4")]) == 0
    assert (tmp_path / "o.mp4").is_file()
