"""The options of ``styletalker edit`` (:class:`EditOptions`): one place for their defaults and
choices, read by the edit loop and by the command line (``commands/edit.py``). No heavy
imports, so ``styletalker --help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

DEFAULT_ALPHA = 5.0  # w = 2 sigmoid(-alpha d), d in decimetres
DEFAULT_BOUNDARY = 0.5  # Eq. 8: weight w if b >= boundary, 1 - w otherwise
DEFAULT_B_MEAN = 0.5
DEFAULT_B_STD = 1.0
EDITOR_NAMES = ("builtin", "ip2p")  # the 2D editors (styletalker.edit.editors.EDITORS)
WEIGHTINGS = ("eq8", "none", "w")
TRAINABLE = ("color", "color+mlp", "color+attr", "all-appearance")


@dataclass
class EditOptions:
    prompt: str
    editor: str = "builtin"
    editor_model: str | None = None
    iters: int = 300
    alpha: float = DEFAULT_ALPHA
    b_boundary: float = DEFAULT_BOUNDARY
    b_mean: float = DEFAULT_B_MEAN
    b_std: float = DEFAULT_B_STD
    b_fixed: float | None = None
    weighting: str = "eq8"  # "eq8" (paper), "none" (--no-landmark-weight), "w" (always w, ablation E4)
    update_every: int | None = None  # None: 1 for the builtin editor, 10 for ip2p
    lr: float = 0.02  # per-Gaussian colour residual (logit space)
    lr_mlp: float = 2e-3  # MLPs / opacity / scale when trained (see ``train``)
    train: str = "color"
    seed: int = 0
    checkpoint_every: int = 50
    # Instruct-Pix2Pix only (docs/edit.md): working size, DDIM steps, text / image guidance
    ip2p_size: int = 512
    ip2p_steps: int = 20
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5

    def editor_kwargs(self) -> dict:
        if self.editor != "ip2p":
            return {}
        return {"size": self.ip2p_size, "steps": self.ip2p_steps, "guidance_scale": self.guidance_scale,
                "image_guidance_scale": self.image_guidance_scale}

    def resolved_update_every(self) -> int:
        if self.update_every is not None:
            return max(1, int(self.update_every))
        return 1 if self.editor == "builtin" else 10

    def validate(self) -> None:
        if self.iters < 1:
            raise InputError("--iters must be at least 1")
        if self.alpha <= 0:
            raise InputError("--alpha must be positive")
        if self.b_std < 0:
            raise InputError("--b-std must be >= 0")
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"unknown weighting {self.weighting!r}; choose from {', '.join(WEIGHTINGS)}")
        if self.train not in TRAINABLE:
            raise InputError(f"unknown --train {self.train!r}; choose from {', '.join(TRAINABLE)}")
        if self.update_every is not None and self.update_every < 1:
            raise InputError("--update-every must be at least 1")
        if self.lr <= 0:
            raise InputError("--lr must be positive")
        if self.ip2p_size < 8 or self.ip2p_steps < 1:
            raise InputError("--ip2p-size must be >= 8 and --ip2p-steps >= 1")

