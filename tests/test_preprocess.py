"""Preprocessing on the real sample video (franck.webm, 4 s at 10 fps, 128 px; the shared
``franck_work`` fixture) and on the driver video: landmark / pose / mask / blendshape sanity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from styletalker.errors import MissingStageError
from styletalker.preprocess import load_dataset, track_video
from styletalker.workdir import is_complete

SIZE = 128
N_EXPECTED = 40  # 4 s at 10 fps


@pytest.fixture(scope="session")
def franck_ds(franck_work):
    return load_dataset(franck_work)


def test_format_files_and_stage(franck_work):
    root = franck_work / "preprocess"
    for name in ("stage.json", "manifest.json", "tracking.npz", "canonical_mesh.npz", "overlay.mp4"):
        assert (root / name).is_file(), name
    assert is_complete(root)
    assert not (franck_work / "preprocess.partial").exists()
    st = json.loads((root / "stage.json").read_text())
    assert st["complete"] is True and st["frames"] == N_EXPECTED and st["dropped_frames"] == 0
    man = json.loads((root / "manifest.json").read_text())
    assert man["num_frames"] == N_EXPECTED and man["image_size"] == [SIZE, SIZE]
    assert man["fps"] == pytest.approx(10.0)
    assert len(sorted((root / "frames").glob("*.png"))) == N_EXPECTED
    assert len(sorted((root / "masks").glob("*.png"))) == N_EXPECTED
    with np.load(root / "tracking.npz") as z:
        shapes = {k: z[k].shape for k in z.files}
        t = z["time"]
        fi = z["frame_index"]
    assert shapes == {
        "frame_index": (N_EXPECTED,), "time": (N_EXPECTED,), "K": (N_EXPECTED, 3, 3),
        "world_to_cam": (N_EXPECTED, 4, 4), "expression": (N_EXPECTED, 52),
        "landmarks2d": (N_EXPECTED, 478, 2), "landmarks3d": (N_EXPECTED, 478, 3), "crop_box": (N_EXPECTED, 4),
    }
    # 10 fps subsampling of a 25 fps source starting at 10 s
    assert t[0] == pytest.approx(10.0, abs=0.05) and np.allclose(np.diff(t), 0.1, atol=0.021)
    assert fi[0] == 250 and np.all(np.diff(fi) >= 2)
    # the overlay video decodes and has one frame per kept frame
    from styletalker.video import probe

    info = probe(root / "overlay.mp4")
    assert info.width >= SIZE and info.frames == N_EXPECTED


def test_dataset_tensors(franck_ds):
    ds = franck_ds
    assert len(ds) == N_EXPECTED
    assert ds.images.shape == (N_EXPECTED, SIZE, SIZE, 3) and ds.images.dtype == torch.float32
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert float(ds.images.std()) > 0.1  # real content, not blank
    assert ds.masks.shape == (N_EXPECTED, SIZE, SIZE, 1)
    assert set(torch.unique(ds.masks).tolist()) <= {0.0, 1.0}
    assert ds.K.shape == (N_EXPECTED, 3, 3) and torch.allclose(ds.K, ds.K[0].expand_as(ds.K))  # one crop per clip
    assert ds.world_to_cam.shape == (N_EXPECTED, 4, 4)
    assert ds.fps == pytest.approx(10.0) and ds.width == ds.height == SIZE
    # crop = full-frame MediaPipe camera (63 deg vertical FOV over 288 px) shifted/scaled
    box = ds.crop_box[0].tolist()
    f_full = 0.5 * 288 / np.tan(np.radians(31.5))
    assert float(ds.K[0, 0, 0]) == pytest.approx(f_full * SIZE / (box[2] - box[0]), rel=1e-4)
    m = ds.canonical_mesh
    assert m.vertices.shape == (468, 3) and m.uvs.shape == (468, 2)
    assert m.faces.shape[1] == 3 and int(m.faces.max()) == 467 and int(m.faces.min()) == 0
    assert float(m.uvs.min()) >= 0 and float(m.uvs.max()) <= 1
    ext = (m.vertices.max(0).values - m.vertices.min(0).values).tolist()
    assert 1.2 < ext[0] < 2.0 and 1.4 < ext[1] < 2.2  # a face ~15 cm wide, ~17 cm tall, in decimetres
    # OpenCV axes: chin (152) below the forehead (10), nose tip (1) nearer the camera than the ears
    v = m.vertices
    assert v[152, 1] > v[10, 1] and v[1, 2] < v[234, 2] and v[1, 2] < v[454, 2]
    assert v[33, 0] < v[263, 0]  # image-left eye corner has smaller x for a frontal face


def test_landmarks_inside_image_and_mask(franck_ds):
    ds = franck_ds
    lm = ds.landmarks2d
    assert float(lm.min()) >= 0 and float(lm.max()) <= SIZE
    # face region: landmarks span a sizeable, centred part of the crop
    span = (lm.max(1).values - lm.min(1).values).mean(0)
    assert 0.3 * SIZE < float(span[0]) < 0.8 * SIZE and 0.35 * SIZE < float(span[1]) < 0.9 * SIZE
    centre = lm.mean(1).mean(0)
    assert abs(float(centre[0]) - SIZE / 2) < 0.2 * SIZE
    # masks cover the face landmarks and the person is a plausible fraction of the crop
    masks = ds.masks[..., 0]
    ij = lm[:, :468].long().clamp(0, SIZE - 1)
    inside = masks[torch.arange(len(ds))[:, None], ij[..., 1], ij[..., 0]]
    assert float(inside.mean()) > 0.99
    frac = masks.mean((1, 2))
    assert 0.25 < float(frac.min()) and float(frac.max()) < 0.9
    # the blue backdrop is background: top corners of the crop are not person
    assert float(masks[:, :8, :8].mean()) < 0.05 and float(masks[:, :8, -8:].mean()) < 0.05


def test_reprojection_and_3d_landmarks(franck_ds):
    from styletalker.preprocess.geometry import project

    ds = franck_ds
    K, W = ds.K.double().numpy(), ds.world_to_cam.double().numpy()
    lm2d, lm3d = ds.landmarks2d.double().numpy(), ds.landmarks3d.double().numpy()
    err3d = np.linalg.norm(project(K, W, lm3d) - lm2d, axis=-1)
    assert err3d.max() < 0.05
    # the rigid canonical mesh through the tracked pose: a few pixels at most (128 px crop)
    verts = ds.vertices.double().numpy()
    err_rigid = np.linalg.norm(project(K, W, np.broadcast_to(verts, (len(ds), 468, 3))) - lm2d[:, :468], axis=-1)
    assert err_rigid.mean() < 2.0 and np.median(err_rigid.mean(1)) < 1.5
    stats = json.loads((ds.root / "manifest.json").read_text())["stats"]
    assert stats["reproj_rigid_px"] == pytest.approx(err_rigid.mean(), rel=0.05)
    # refinement helps: MediaPipe's own pose reprojects worse than the refined one
    assert stats["reproj_mediapipe_pose_px"] > err_rigid.mean()
    # MediaPipe's relative z agrees with the posed canonical depths (slope ~ depth / focal)
    assert 0.7 < stats["depth_scale_ratio"] < 1.4
    # 3D landmarks stay close to the canonical vertices (expression offsets are millimetres)
    off = np.linalg.norm(lm3d[:, :468] - verts, axis=-1)
    assert off.mean() < 0.12 and np.median(off) < 0.1
    # iris centres (468 right-of-image... both) sit between their eye corners
    for iris, (a, b) in ((468, (33, 133)), (473, (362, 263))):
        mid = 0.5 * (verts[a] + verts[b])
        assert np.linalg.norm(lm3d[:, iris] - mid, axis=-1).max() < 0.12
    # the same through the render module's camera convention
    from styletalker.render.common import project as rproject

    i = 7
    cam = ds.camera(i)
    pts = ds.landmarks3d[i]
    pr = rproject(pts, torch.tensor([[1.0, 0, 0, 0]]).expand(478, 4), torch.full((478, 3), 0.01), cam)
    assert torch.allclose(pr.xy, ds.landmarks2d[i], atol=0.05) and bool(pr.valid.all())


def test_head_pose_sane(franck_ds):
    from styletalker.preprocess.geometry import rotation_angle_deg

    W = franck_ds.world_to_cam.double().numpy()
    R, t = W[:, :3, :3], W[:, :3, 3]
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-4)
    assert np.allclose(np.linalg.det(R), 1.0, atol=1e-4)
    # face in front of the camera at a plausible distance (dm), near the optical axis
    assert np.all((t[:, 2] > 1.5) & (t[:, 2] < 8.0))
    assert np.all(np.abs(t[:, :2]) < 1.0)
    # roughly frontal for this video, smooth between consecutive frames (0.1 s apart)
    ang = rotation_angle_deg(R)
    assert ang.max() < 30
    step = rotation_angle_deg(np.swapaxes(R[1:], 1, 2) @ R[:-1])
    assert step.max() < 6 and np.median(step) < 2.5
    assert np.linalg.norm(np.diff(t, axis=0), axis=1).max() < 0.15


def test_blendshapes(franck_ds):
    ds = franck_ds
    e = ds.expression.numpy()
    names = ds.expression_names
    assert e.shape == (N_EXPECTED, 52) and len(names) == 52 and names[0] == "_neutral"
    assert {"jawOpen", "eyeBlinkLeft", "mouthSmileRight"} <= set(names)
    assert e.min() >= 0 and e.max() <= 1
    # blinks: eyeBlink* follow the eyelid gap measured from the 2D landmarks (he blinks and looks
    # down in this window; the mouth is nearly closed, so we check the eyes)
    blink = 0.5 * (e[:, names.index("eyeBlinkLeft")] + e[:, names.index("eyeBlinkRight")])
    assert blink.std() > 0.1
    lm = ds.landmarks2d.numpy()

    def ratio(a, b, c, d):
        return np.linalg.norm(lm[:, a] - lm[:, b], axis=1) / np.linalg.norm(lm[:, c] - lm[:, d], axis=1)

    eye_open = ratio(159, 145, 33, 133) + ratio(386, 374, 362, 263)
    assert np.corrcoef(blink, eye_open)[0, 1] < -0.9
    jaw = e[:, names.index("jawOpen")]
    gap = ratio(13, 14, 10, 152)
    assert np.corrcoef(jaw, gap)[0, 1] > 0.4
    # neutral frame: valid index, calm expression and near-frontal pose
    nf = ds.neutral_frame
    assert 0 <= nf < len(ds)
    act = e[:, 1:].sum(1)
    assert act[nf] <= np.median(act)


def test_load_dataset_missing(tmp_path):
    with pytest.raises(MissingStageError, match="styletalker preprocess"):
        load_dataset(tmp_path)
    (tmp_path / "preprocess").mkdir()
    (tmp_path / "preprocess" / "manifest.json").write_text("{}")
    with pytest.raises(MissingStageError):
        load_dataset(tmp_path)


def test_rerun_complete_is_noop(franck_work, franck_video, capsys):
    from styletalker.cli import main

    st = franck_work / "preprocess" / "stage.json"
    before = (st.read_bytes(), st.stat().st_mtime_ns)
    rc = main(["preprocess", str(franck_video), str(franck_work), "--start", "10", "--duration", "4", "--fps", "10",
               "--size", "128"])
    assert rc == 0
    assert (st.read_bytes(), st.stat().st_mtime_ns) == before
    assert "already complete" in capsys.readouterr().err


def test_track_video_driver(driver_video):
    d = track_video(driver_video, start=1.0, duration=None, fps=None, max_frames=12, size=64, progress=False,
                    return_frames=True)
    n = len(d["frame_index"])
    assert n == 12 and d["frames"].shape == (12, 64, 64, 3) and d["frames"].dtype == np.uint8
    assert d["expression"].shape == (12, 52) and d["world_to_cam"].shape == (12, 4, 4)
    assert d["landmarks2d"].shape == (12, 478, 2) and d["landmarks3d"].shape == (12, 478, 3)
    assert d["expression_names"][0] == "_neutral" and d["fps"] == pytest.approx(25.0)
    assert d["stats"]["reproj_rigid_px"] < 1.5  # 64 px crop
    t = d["world_to_cam"][:, :3, 3]
    assert np.all((t[:, 2] > 1.5) & (t[:, 2] < 10))
    assert float(d["landmarks2d"].min()) >= 0 and float(d["landmarks2d"].max()) <= 64
    assert d["time"][0] == pytest.approx(1.0, abs=0.05)
