"""Where the torch work of a stage runs: ``--device auto|cpu|cuda`` (every stage that uses torch).

* :func:`resolve_device` turns the option into ``"cpu"`` or ``"cuda"`` (``auto``: CUDA when
  torch sees a GPU) and rejects ``cuda`` on a machine without one;
* :func:`model_dtype` is the dtype of diffusion / CLIP weights on that device: float16 on CUDA
  (half the memory, tensor cores), float32 on the CPU (many half-precision CPU kernels are missing
  or slow);
* :func:`module_placement` / :func:`check_placement` read and check the device and dtype of a
  model's weights, so inputs can be cast to them (one device and dtype per model).

Gaussian rendering follows the tensors: CUDA tensors go through gsplat, CPU tensors through the
C++ CPU rasterizer (``styletalker.render``).
"""

from __future__ import annotations

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str | None = DEFAULT_DEVICE) -> str:
    """``"auto"`` (or None) -> ``"cuda"`` when available else ``"cpu"``; ``"cpu"`` / ``"cuda"`` as
    they are. ``cuda`` without a GPU and unknown names raise :class:`InputError`."""
    name = DEFAULT_DEVICE if name is None else str(name)
    if name not in DEVICES:
        raise InputError(f"unknown device {name!r}; choose {', '.join(DEVICES[1:])} or auto")
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cuda" and not cuda_available():
        raise InputError("--device cuda requested but CUDA is not available (torch sees no GPU); use --device cpu")
    return name


def model_dtype(device: str):
    """Weights dtype of the diffusion and CLIP models on ``device``: float16 on CUDA, else float32."""
    import torch

    return torch.float16 if str(device).startswith("cuda") else torch.float32


def module_placement(*modules):
    """(device, dtype) shared by every floating-point parameter of ``modules``; raises
    ``RuntimeError`` when they disagree (weights split over devices or dtypes)."""
    seen = set()
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            if p.is_floating_point():
                seen.add((p.device, p.dtype))
    if len(seen) != 1:
        raise RuntimeError(f"model weights are not on one device and dtype: {sorted(map(str, seen))}")
    return next(iter(seen))


def check_placement(device: str, dtype, *modules) -> None:
    """Raise ``RuntimeError`` unless every parameter of ``modules`` is on ``device`` with ``dtype``."""
    import torch

    dev, dt = module_placement(*modules)
    want = torch.device(device)
    if dev.type != want.type or (want.index is not None and dev.index != want.index) or dt != dtype:
        raise RuntimeError(f"model weights are on {dev} / {dt}, expected {device} / {dtype}")
