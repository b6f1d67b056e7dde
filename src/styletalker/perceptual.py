"""LPIPS (Zhang et al. 2018), the AlexNet variant v0.1 of the ``lpips`` package: the perceptual
distance of the paper's Tables 3 and 5.

    lp = load_lpips()                        # or load_lpips("path/to/alexnet.pth" | DIR | "org/name")
    d = lp.distance(img_a, img_b)            # (H, W, 3) images in [0, 1] -> float (0 = identical)

``d = sum_l mean_hw( w_l . (n_l(a) - n_l(b))^2 )`` where ``n_l`` are the channel-normalised
activations of AlexNet's five ReLU layers (inputs scaled to [-1, 1], then LPIPS' scaling layer)
and ``w_l`` the learned linear weights. Computed here in plain PyTorch (no torchvision); it
matches ``lpips.LPIPS(net="alex")`` (tests/test_perceptual.py holds reference values of the
package).

Two sets of weights are needed:

* the linear weights ``w_l`` ship with the PyPI package ``lpips`` (``lpips/weights/v0.1/alex.pth``,
  installed with ``pip install --no-deps lpips`` by ``make setup``: its torchvision requirement
  would replace the CPU torch);
* the ImageNet AlexNet backbone (torchvision's ``alexnet-owt-7be5be79.pth``, 233 MB), from
  ``model``: ``None`` / ``"alexnet"`` = torchvision's file in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``, downloaded there with a progress bar when online, never with
  ``HF_HUB_OFFLINE=1``); a ``.pth`` / ``.safetensors`` file; a folder holding one; or a Hugging
  Face id of a repo holding one (:mod:`styletalker.hub`).

When either is missing :func:`load_lpips` raises :class:`~styletalker.errors.MissingModelError`
saying how to get it; ``styletalker evaluate`` reports LPIPS as "unavailable: <why>" then.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import MissingModelError
from .hub import DEFAULT_LPIPS_MODEL
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/" + ALEXNET_FILE
# AlexNet ``features`` indices of the five conv layers and the ReLU after which LPIPS taps
_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1), 8: (384, 256, 3, 1, 1),
          10: (256, 256, 3, 1, 1)}
_TAPS = (1, 4, 7, 9, 11)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` layer for layer (same state-dict keys)."""
    layers: list[nn.Module] = []
    for i in range(12):
        if i in _CONVS:
            cin, cout, k, s, p = _CONVS[i]
            layers.append(nn.Conv2d(cin, cout, k, s, p))
        elif i in (2, 5):
            layers.append(nn.MaxPool2d(3, 2))
        else:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone; ``forward(a, b)`` on (N,3,H,W) in [0, 1] -> (N,)."""

    def __init__(self, backbone_state: dict, linear_state: dict):
        super().__init__()
        self.features = _alexnet_features()
        feats = {k[len("features."):]: v for k, v in backbone_state.items() if k.startswith("features.")}
        missing = [f"features.{i}.{w}" for i in _CONVS for w in ("weight", "bias") if f"{i}.{w}" not in feats]
        if missing:
            raise MissingModelError(f"not AlexNet weights (torchvision layout): missing {', '.join(missing[:3])}")
        self.features.load_state_dict({k: v for k, v in feats.items() if int(k.split(".")[0]) < 12})
        self.lins = nn.ParameterList([nn.Parameter(linear_state[f"lin{k}.model.1.weight"].float().clone())
                                      for k in range(5)])
        self.register_buffer("shift", torch.tensor(_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).reshape(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b]).to(self.shift)
        h = ((x * 2 - 1) - self.shift) / self.scale
        total = 0.0
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == _TAPS[tap]:
                n = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                fa, fb = n.chunk(2)
                total = total + nn.functional.conv2d((fa - fb) ** 2, self.lins[tap]).mean((2, 3))[:, 0]
                tap += 1
                if tap == len(_TAPS):
                    break
        return total

    def distance(self, a, b) -> float:
        """LPIPS of two (H, W, 3) images (numpy or torch, [0, 1] floats or uint8)."""
        def t(img):
            arr = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
            arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
            return torch.from_numpy(arr).permute(2, 0, 1)[None]

        with torch.no_grad():
            return float(self(t(a), t(b))[0])


def linear_weights_path() -> Path:
    """``alex.pth`` of the installed ``lpips`` package (found without importing it: that needs torchvision)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError("LPIPS needs the linear weights of the `lpips` package: "
                                "pip install --no-deps lpips==0.1.4 (part of `make setup`)")
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    if not p.is_file():
        raise MissingModelError(f"{p} is missing; reinstall: pip install --no-deps --force-reinstall lpips==0.1.4")
    return p


def _load_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from .safeload import load_torch

    sd = load_torch(path, "LPIPS / AlexNet weights file", legacy=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _weights_in(folder: Path) -> Path:
    if (folder / ALEXNET_FILE).is_file():
        return folder / ALEXNET_FILE
    found = sorted(p for p in folder.rglob("*") if p.suffix in (".pth", ".pt", ".safetensors") and p.is_file())
    if len(found) != 1:
        raise MissingModelError(f"{folder}: expected {ALEXNET_FILE} or exactly one .pth/.safetensors AlexNet "
                                f"weights file, found {len(found)}")
    return found[0]


def torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def backbone_path(model: str | os.PathLike | None = None) -> Path:
    """The AlexNet weights file named by ``model`` (see the module doc); MissingModelError with the
    reason and the way to get it when there is none."""
    from .hub import LPIPS_BACKBONE, hub_offline, is_hub_id, resolve_model
    from .workdir import is_quiet

    ref = str(model) if model else DEFAULT_LPIPS_MODEL
    if ref == DEFAULT_LPIPS_MODEL:
        cached = torch_hub_checkpoints() / ALEXNET_FILE
        if cached.is_file():
            return cached
        how = (f"on a machine with internet run `python -c \"import torch; torch.hub.load_state_dict_from_url("
               f"'{ALEXNET_URL}')\"` and copy {cached} here, or pass --lpips-model FILE|DIR|ID")
        if hub_offline():
            raise MissingModelError(f"AlexNet weights {ALEXNET_FILE} are not in {cached.parent} and HF_HUB_OFFLINE=1; {how}")
        try:
            torch.hub.load_state_dict_from_url(ALEXNET_URL, progress=not is_quiet(), check_hash=True)
        except Exception as e:  # no network, proxy, ...
            raise MissingModelError(f"AlexNet weights {ALEXNET_FILE} are not in {cached.parent} and could not be "
                                    f"downloaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}); {how}") from None
        return cached
    p = Path(ref).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        return _weights_in(p)
    if is_hub_id(ref):
        return _weights_in(resolve_model(ref, LPIPS_BACKBONE))
    raise MissingModelError(f"{ref}: no such AlexNet weights file or folder (--lpips-model takes a file, a folder, "
                            f"a Hugging Face id or '{DEFAULT_LPIPS_MODEL}' for torchvision's weights)")


def load_lpips(model: str | os.PathLike | None = None, device: str = "cpu") -> LPIPS:
    """:class:`LPIPS` with the linear weights of the ``lpips`` package and the backbone named by ``model``."""
    lin = _load_state(linear_weights_path())
    path = backbone_path(model)
    try:
        state = _load_state(path)
    except Exception as e:
        raise MissingModelError(f"{path}: unreadable AlexNet weights ({type(e).__name__}: {e})") from None
    try:
        return LPIPS(state, lin).to(device)
    except MissingModelError as e:
        raise MissingModelError(f"{path}: {e}") from None
