"""--device resolution and the weights placement checks, shared by every stage."""

from __future__ import annotations

import pytest
import torch

from styletalker.device import check_placement, model_dtype, module_placement, resolve_device
from styletalker.errors import InputError


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    assert model_dtype("cuda") == torch.float16 and model_dtype("cpu") == torch.float32


def test_placement_checks():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert module_placement(a, b) == (torch.device("cpu"), torch.float32)
    check_placement("cpu", torch.float32, a, b)
    b.to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="not on one device and dtype"):
        module_placement(a, b)
    with pytest.raises(RuntimeError, match="expected cpu / torch.float32"):
        check_placement("cpu", torch.float32, b)


def test_every_torch_command_has_the_same_device_option():
    from styletalker.cli import build_parser

    p = build_parser()
    for cmd in ("reconstruct", "edit", "animate", "render", "evaluate"):
        sub = p._subparsers._group_actions[0].choices[cmd]
        opt = {a.dest: a for a in sub._actions}["device"]
        assert opt.choices == ["auto", "cpu", "cuda"] and opt.default == "auto", cmd
    with pytest.raises(SystemExit):
        p.parse_args(["render", "w", "--device", "tpu"])


def test_render_and_animate_device_option(tmp_path, capsys):
    """--device reaches load_scene: cpu renders, cuda without a GPU stops with exit code 2."""
    from styletalker.avatar import GaussianAvatar
    from styletalker.cli import main

    torch.manual_seed(0)
    xyz = torch.randn(200, 3) * 0.3
    path = tmp_path / "avatar.pt"
    GaussianAvatar(xyz, xyz[:10].clone(), feat_dim=8, n_freqs=2, hidden=16).save(path)
    assert main(["render", str(path), "--device", "cpu", "-o", str(tmp_path / "v.png")]) == 0
    assert (tmp_path / "v.png").stat().st_size > 0
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert main(["render", str(path), "--device", "cuda", "-o", str(tmp_path / "w.png")]) == 2
        assert main(["animate", str(path), "--device", "cuda", "--driver", str(tmp_path / "none.mp4")]) == 2
        err = capsys.readouterr().err
        assert err.count("CUDA is not available") == 2 and not (tmp_path / "w.png").exists()
