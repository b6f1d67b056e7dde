"""Reconstruction on the real sample clip (franck_work: 4 s at 10 fps, 128 px), preset "test"."""

import json
import shutil

import numpy as np
import pytest
import torch

from styletalker.avatar import GaussianAvatar
from styletalker.errors import InputError, MissingStageError, OptionsChangedError
from styletalker.reconstruct import run_reconstruct
from styletalker.reconstruct.mesh_io import read_obj
from styletalker.workdir import is_complete, read_json


def _copy_preprocessed(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "preprocess", dst / "preprocess")
    return dst


def test_outputs_and_quality(franck_avatar_work):
    rec = franck_avatar_work / "reconstruct"
    assert is_complete(rec)
    for name in ("config.json", "mesh/mesh.obj", "mesh/checkpoint.pt", "prior/cameras.npz", "prior/views/005.png",
                 "gaussians/checkpoint.pt", "avatar.pt", "avatar.ply", "metrics.json", "renders/prior_views.png",
                 "renders/orbit.png"):
        assert (rec / name).is_file(), name
    # stage 1 reduced its losses on the held-out frames of the real clip
    mesh = read_json(rec / "mesh" / "stage.json")
    h0, h1 = mesh["heldout_init"], mesh["heldout_final"]
    # (a better starting shape leaves less to gain: 0.79 from the 2026-12-01 hull, 0.81 from the
    # closed, deeper one of 2026-12-02, the final loss the same 0.026 on this clip)
    assert h1["total"] < 0.85 * h0["total"]
    assert h1["sil"] < h0["sil"] and h1["rgb"] < h0["rgb"] and h1["lmk"] < h0["lmk"]
    # the exported mesh is a readable, closed-ish triangle mesh around the head
    v, f, c = read_obj(rec / "mesh" / "mesh.obj")
    assert len(v) == mesh["vertices"] and len(f) == mesh["faces"] and c is not None
    assert 0.5 < np.linalg.norm(v - v.mean(0), axis=1).mean() < 2.0
    # stage 2 improves over its initialisation on held-out (never trained) frames
    m = json.loads((rec / "metrics.json").read_text())
    assert len(m["heldout_frames"]) == 4 and m["psnr"] > m["init"]["psnr"] + 1.0 and m["ssim"] > m["init"]["ssim"]
    assert 10 < m["psnr"] < 50 and 0 < m["ssim"] <= 1
    # avatar file: the public API, deformation kept from stage 1 (frozen)
    av = GaussianAvatar.load(rec / "avatar.pt")
    st = torch.load(rec / "mesh" / "checkpoint.pt", weights_only=True)["model"]
    for k, t in av.deform.state_dict().items():
        assert torch.equal(t, st["deform." + k]), k
    assert av.num_points == m["points"]
    assert av.landmark_distance().shape == (av.num_points,)
    assert av.extra["holdout_every"] == 10
    from styletalker.render.ply import load_ply

    g = load_ply(rec / "avatar.ply")
    assert g["means"].shape == (av.num_points, 3)


def test_complete_is_noop_and_config_mismatch(franck_avatar_work, tmp_path):
    rec = franck_avatar_work / "reconstruct"
    before = (rec / "avatar.pt").stat().st_mtime_ns
    run_reconstruct(franck_avatar_work, preset="test", progress=False)
    assert (rec / "avatar.pt").stat().st_mtime_ns == before
    # an interrupted run started with other options is not silently mixed
    work = _copy_preprocessed(franck_avatar_work, tmp_path / "w")
    with pytest.raises(KeyboardInterrupt):
        run_reconstruct(work, preset="test", progress=False, hook=lambda s, i: s.startswith("mesh") and i == 5)
    with pytest.raises(OptionsChangedError, match=r"other options .*mesh\.train\.iters: 40 -> 7.*--force"):
        run_reconstruct(work, preset="test", progress=False, mesh_iters=7)


def test_a_record_from_before_an_option_existed(franck_avatar_work, tmp_path):
    """A complete reconstruction written before an option existed (its record lacks it) ran with
    that option's default: running again is a no-op, asking for another value is a change."""
    from styletalker.workfolder import _record_fingerprint

    work = tmp_path / "w"
    shutil.copytree(franck_avatar_work, work)
    p = work / "reconstruct" / "config.json"
    rec = json.loads(p.read_text())
    del rec["config"]["mesh"]["egg"]
    rec["fingerprint"] = _record_fingerprint(rec)
    p.write_text(json.dumps(rec))
    before = (work / "reconstruct" / "avatar.pt").stat().st_mtime_ns
    run_reconstruct(work, preset="test", progress=False)
    assert (work / "reconstruct" / "avatar.pt").stat().st_mtime_ns == before
    with pytest.raises(OptionsChangedError, match=r"mesh\.egg: 0\.0 -> 1\.0"):
        run_reconstruct(work, preset="test", progress=False, **{"mesh.egg": 1.0})


def test_resume_after_interruption_gives_same_result(franck_avatar_work, tmp_path, capsys):
    import signal

    work = _copy_preprocessed(franck_avatar_work, tmp_path / "w")
    # a real SIGINT during the mesh stage: checkpoint saved, KeyboardInterrupt raised, nothing complete
    with pytest.raises(KeyboardInterrupt):
        run_reconstruct(work, preset="test", progress=False,
                        hook=lambda s, i: s.startswith("mesh") and i == 13 and signal.raise_signal(signal.SIGINT))
    rec = work / "reconstruct"
    assert not is_complete(rec) and not is_complete(rec / "mesh")
    assert torch.load(rec / "mesh" / "checkpoint.pt", weights_only=True)["iteration"] == 14
    # interrupted again in the Gaussian stage, then finished
    with pytest.raises(KeyboardInterrupt):
        run_reconstruct(work, preset="test", progress=False, hook=lambda s, i: s == "gaussians" and i == 17)
    assert is_complete(rec / "mesh") and is_complete(rec / "prior") and not is_complete(rec / "gaussians")
    capsys.readouterr()
    run_reconstruct(work, preset="test", progress=False)
    assert is_complete(rec)
    assert "gaussian stage: resuming at iteration" in capsys.readouterr().err  # the checkpoint was used, not ignored
    a = GaussianAvatar.load(rec / "avatar.pt").state_dict()
    b = GaussianAvatar.load(franck_avatar_work / "reconstruct" / "avatar.pt").state_dict()
    for k in b:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    ma = json.loads((rec / "metrics.json").read_text())
    mb = json.loads((franck_avatar_work / "reconstruct" / "metrics.json").read_text())
    assert ma["psnr"] == pytest.approx(mb["psnr"], abs=1e-3)


def test_ablation_flags_change_the_pipeline(franck_avatar_work, tmp_path):
    work = _copy_preprocessed(franck_avatar_work, tmp_path / "w")
    run_reconstruct(work, preset="test", progress=False, no_mesh=True, no_prior=True)
    rec = work / "reconstruct"
    m = json.loads((rec / "metrics.json").read_text())
    assert m["ablation"] == {"mesh": False, "prior": "none", "retrain_deform": False}
    assert not (rec / "mesh").exists() and not (rec / "prior").exists() and "mesh" not in m
    assert read_json(rec / "gaussians" / "stage.json")["deform"] == "trained"
    assert m["psnr"] > m["init"]["psnr"]
    # D2: mesh initialisation but MLP_deform re-trained from scratch
    work2 = _copy_preprocessed(franck_avatar_work, tmp_path / "w2")
    run_reconstruct(work2, preset="test", progress=False, retrain_deform=True, gauss_iters=10)
    av = GaussianAvatar.load(work2 / "reconstruct" / "avatar.pt")
    st = torch.load(work2 / "reconstruct" / "mesh" / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(av.deform.net[0].weight, st["deform.net.0.weight"])
    assert json.loads((work2 / "reconstruct" / "metrics.json").read_text())["ablation"]["retrain_deform"] is True


def test_mesh_from_reuses_a_matching_stage_1_only(franck_avatar_work, tmp_path):
    """An ablation of the later stages takes another run's stage-1 mesh (bench/novel_view.py
    --mesh-from): the same avatar as training stage 1 again; a mesh of other stage-1 options or of
    other preprocessed frames is refused before any training (only the run's record is written)."""
    src = franck_avatar_work / "reconstruct" / "mesh"
    work = _copy_preprocessed(franck_avatar_work, tmp_path / "w")
    run_reconstruct(work, preset="test", progress=False, mesh_from=src, **{"data.edge_px": 1})
    rec = work / "reconstruct"
    assert is_complete(rec)
    assert (rec / "mesh" / "checkpoint.pt").read_bytes() == (src / "checkpoint.pt").read_bytes()
    own = _copy_preprocessed(franck_avatar_work, tmp_path / "own")
    run_reconstruct(own, preset="test", progress=False, **{"data.edge_px": 1})
    a = GaussianAvatar.load(rec / "avatar.pt").state_dict()
    b = GaussianAvatar.load(own / "reconstruct" / "avatar.pt").state_dict()
    for k in b:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    other = _copy_preprocessed(franck_avatar_work, tmp_path / "other")
    with pytest.raises(InputError, match="other stage-1 options"):
        run_reconstruct(other, preset="test", progress=False, mesh_from=src, mesh_iters=7)
    assert not (other / "reconstruct" / "mesh").exists()
    with pytest.raises(InputError, match="not a complete stage-1 mesh folder"):
        run_reconstruct(other, preset="test", progress=False, mesh_from=tmp_path / "nowhere", mesh_iters=7)
    # a mesh of another clip (its reconstruction's record names other preprocessed frames)
    from styletalker.workfolder import _record_fingerprint

    foreign = tmp_path / "foreign" / "reconstruct"
    shutil.copytree(franck_avatar_work / "reconstruct", foreign)
    rec = json.loads((foreign / "config.json").read_text())
    rec["inputs"]["preprocess"]["fingerprint"] = "another clip"
    rec["fingerprint"] = _record_fingerprint(rec)
    (foreign / "config.json").write_text(json.dumps(rec))
    third = _copy_preprocessed(franck_avatar_work, tmp_path / "third")
    with pytest.raises(InputError, match="other preprocessed frames"):
        run_reconstruct(third, preset="test", progress=False, mesh_from=foreign / "mesh", **{"data.edge_px": 1})
    assert not (third / "reconstruct" / "mesh").exists()
    # a mesh trained on a GPU: another device's mesh (not bit-identical), refused as such, also on
    # a machine without CUDA
    from styletalker.reconstruct.checkpoint import load_state
    from styletalker.workdir import save_torch

    gpu = tmp_path / "gpu" / "mesh"
    shutil.copytree(src, gpu)
    st = load_state(gpu / "checkpoint.pt")
    st["config"]["device"] = "cuda"
    save_torch(gpu / "checkpoint.pt", st)
    with pytest.raises(InputError, match="other stage-1 options"):
        run_reconstruct(third, preset="test", progress=False, mesh_from=gpu, **{"data.edge_px": 1})


def test_cli_reconstruct_evaluate_and_errors(franck_avatar_work, tmp_path, capsys):
    from styletalker.cli import main

    assert main(["reconstruct", str(franck_avatar_work), "--preset", "test"]) == 0
    out = capsys.readouterr().out
    m = json.loads((franck_avatar_work / "reconstruct" / "metrics.json").read_text())
    assert f"PSNR {m['psnr']:.2f}" in out
    assert main(["evaluate", str(franck_avatar_work), "--no-write"]) == 0
    out = capsys.readouterr().out
    assert f"PSNR {m['psnr']:.2f} dB" in out and "SSIM" in out
    # missing preprocess -> clear error, exit 2, nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reconstruct", str(empty), "--preset", "test"]) == 2
    err = capsys.readouterr().err
    assert "styletalker preprocess" in err and not (empty / "reconstruct").exists()
    with pytest.raises(MissingStageError):
        run_reconstruct(empty, preset="test")
    assert main(["evaluate", str(empty)]) == 2
    # svd prior without weights -> MissingModelError before any training output looks complete
    work = _copy_preprocessed(franck_avatar_work, tmp_path / "w")
    assert main(["reconstruct", str(work), "--preset", "test", "--prior", "svd", "--prior-model",
                 str(tmp_path / "no_model")]) == 2
    assert "no_model" in capsys.readouterr().err
    assert not is_complete(work / "reconstruct")
