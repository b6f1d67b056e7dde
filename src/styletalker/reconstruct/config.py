"""Reconstruction options (one dataclass per part); the presets are in :mod:`.presets`.

Every option can be overridden (``make_config(preset, **{"mesh.train.iters": 500})`` or the CLI flags).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from ..errors import InputError
from .gauss_stage import GaussTrainConfig
from .mesh_stage import MeshTrainConfig
from .presets import ANCHORS, HULL_FACES, MESH_INITS, PRESETS, PRIORS  # noqa: F401  (re-exported)


@dataclass
class DataOptions:
    size: int | None = None  # resample frames to size x size (None: as preprocessed)
    max_frames: int | None = None  # evenly spaced subset of the clip (None: all)
    holdout_every: int = 10  # every 10th frame is held out for evaluation
    cut_margin: float = 0.05  # dm below the chin where the head region ends
    # pixels on each side of the head mask's outline whose colour is not trusted (they mix hair and
    # ears with the backdrop): left out of the Gaussians' colour loss and of the prior's texture
    edge_px: int = 2
    # the backdrop's colour taken out of the head's outline (docs/reconstruct.md, "Clean edges"):
    # pixels that mix the person with the backdrop get the backdrop's share removed, or are left
    # out where it is over half (styletalker.reconstruct.data.colour_targets); stage 2 / prior only
    unmix: bool = True
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class ModelOptions:
    feat_dim: int = 32
    n_freqs: int = 4
    hidden: int = 64
    # true: the MLPs see each expression channel from the neutral frame in units of its training
    # span (styletalker.models.ExpressionNorm); false: raw blendshapes. With expr_basis and
    # gauss.train.w_mouth the default (docs/reconstruct.md, "Expressions"): a talking clip's avatar
    # follows other people's mouth and smile, held-out PSNR +0.6 dB on the demo clip, on par on
    # the benchmark clip
    expr_normalize: bool = True
    # true: a linear model of the clip's tracked landmarks per expression channel moves the surface
    # (and the Gaussians on it) beside MLP_deform (styletalker.models.ExpressionBasis); false: the
    # paper's MLP_deform alone
    expr_basis: bool = True


@dataclass
class MeshOptions:
    enabled: bool = True  # False = ablation "w/o mesh-enhanced deformation field" (D1)
    res: int = 32
    extent: float = 1.45  # half size of the tet grid, in sphere radii, centred on the sphere
    radius: float | None = None  # initial sphere radius (dm); None: from the landmarks (~1.2)
    init: str = "hull"  # starting surface: hull (visual hull closed at a head's depth) or sphere (the paper's)
    # hull: head depth behind the nose tip, in face widths (the skull 1.35-1.45, hair on top of
    # it; 1.4 before 2026-12-02). The benchmark's side cameras gain +0.4 / +1.1 dB from 1.4 to 1.6,
    # +0.8 / +1.7 dB at 1.8, an option for voluminous hair (docs/reconstruct.md, "Novel views")
    depth_ratio: float = 1.6
    # hull: the back half of each slice as full as an egg widest behind the middle (k; 0: the
    # ellipse). Opt-in: 1 gains the benchmark's side cameras +0.5-0.7 dB, costs its frontal
    # held-out frames 0.7 dB (docs/reconstruct.md, "Novel views")
    egg: float = 0.0
    symmetric_hull: bool = True  # hull: also carved by the mirror image of every silhouette
    # symmetric hull: built from the neutral face as tracked (tracked; MediaPipe's depth shear then
    # sets both cheeks back to the deeper side's depth) or from its symmetric part (symmetric,
    # opt-in: the Pexels clip's avatar found at -60 degrees, no gain on the benchmark or the demo
    # clip; docs/reconstruct.md, "Novel views" (30))
    hull_face: str = HULL_FACES[0]
    smooth: float = 1.0
    offset_scale: float = 0.25
    train: MeshTrainConfig = field(default_factory=MeshTrainConfig)


@dataclass
class PriorOptions:
    backend: str = PRIORS[0]  # symmetric | svd | none
    model: str | None = None  # local folder of the svd pipeline
    views: int = 18  # the paper's Table 4: 18 views better than 6
    span_deg: float = 180.0
    # symmetric: weight of prior-view pixels seen frontally / at a grazing angle in the neutral
    # frame, mirrored from the other side, filled (None: all 1, the format-1 prior)
    confidence: tuple[float, float, float, float] | None = (0.0, 0.5, 1.0, 0.5)
    # symmetric: weight of the frontally seen pixels in views turned far from the neutral camera
    # (the video frames do not show those points from there), reached linearly from the first
    # ``confidence`` weight over the yaws SymmetricPrior.TURN_FROM..TURN_AT (None: no rise)
    turned_front: float | None = 1.0
    steps: int = 25  # svd: denoising steps
    orbit_deg: float = 360.0  # svd: yaw covered by the generated frames


@dataclass
class GaussOptions:
    points: int = 20000  # number of Gaussians
    init_opacity: float = 0.8
    retrain_deform: bool = False  # ablation D2: MLP_deform from scratch in stage 2
    anchor: str = "mesh"  # mesh: Gaussians bound to the stage-1 triangles; free: free centres (format 1)
    thickness: float = 0.3  # mesh anchor: initial normal scale / in-plane scale (flat discs)
    attr_bound: float | None = 0.25  # bound of MLP_attr's expression residuals (0: static; None: unbounded)
    clamp_expression: bool = True  # clamp expressions to the training range before the MLPs
    train: GaussTrainConfig = field(default_factory=GaussTrainConfig)


@dataclass
class ReconstructConfig:
    preset: str = "cpu"
    device: str = "cpu"
    seed: int = 0
    ckpt_every: int = 100
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    mesh: MeshOptions = field(default_factory=MeshOptions)
    prior: PriorOptions = field(default_factory=PriorOptions)
    gauss: GaussOptions = field(default_factory=GaussOptions)

    def to_json(self) -> dict:
        return asdict(self)


def parse_value(text: str):
    """A command-line option value: none/null, true/false, an int, a float, a comma list (tuple)
    of those, or else the string itself."""
    t = text.strip()
    if "," in t:
        return tuple(parse_value(x) for x in t.split(",") if x.strip())
    if t.lower() in ("none", "null"):
        return None
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for kind in (int, float):
        try:
            return kind(t)
        except ValueError:
            pass
    return t


def parse_assignment(text: str) -> tuple[str, object]:
    """``"gauss.anchor=free"`` -> ``("gauss.anchor", "free")`` (see :func:`parse_value`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects KEY=VALUE with a dotted option name, got {text!r}")
    return key.strip(), parse_value(value)


def option_value(dotted: str, value):
    """``value`` as the option ``dotted`` takes it (its type's rules, InputError when it cannot)."""
    cfg = ReconstructConfig()
    _set(cfg, dotted, value)
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _set(obj, dotted: str, value) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not hasattr(obj, p):
            raise InputError(f"unknown reconstruct option {dotted!r}")
        obj = getattr(obj, p)
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
    if name not in fields:
        raise InputError(f"unknown reconstruct option {dotted!r}")
    setattr(obj, name, _checked(dotted, str(fields[name].type), value))


def _checked(dotted: str, annotation: str, value):
    """``value`` for an option annotated ``annotation`` (a string: this module's annotations are
    postponed). ``none`` given for a text option that cannot be None is the word itself
    (``prior.backend=none``); any other None, and a word for a number, is an error."""
    kinds = {k.strip().split("[")[0] for k in annotation.split("|")}
    if value is None:
        if "None" in kinds:
            return None
        if "str" in kinds:
            return "none"
        raise InputError(f"--set {dotted}: this option cannot be none (expects {annotation})")
    if isinstance(value, str) and "str" not in kinds:
        raise InputError(f"--set {dotted}={value}: expects {annotation}")
    return value


def make_config(preset: str = "cpu", device: str = "auto", **overrides) -> ReconstructConfig:
    """Config for ``preset`` with dotted-key overrides (a ``None`` value sets the option to None)."""
    from ..device import resolve_device

    device = resolve_device(device)
    if preset == "auto":
        preset = "full" if device == "cuda" else "cpu"
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)} or auto")
    cfg = ReconstructConfig(preset=preset, device=device)
    for k, v in PRESETS[preset].items():
        _set(cfg, k, v)
    for k, v in overrides.items():
        _set(cfg, k, v)
    validate(cfg)
    return cfg


def validate(cfg: ReconstructConfig) -> None:
    if cfg.prior.backend not in PRIORS:
        raise InputError(f"unknown prior backend {cfg.prior.backend!r}; choose from {', '.join(PRIORS)}")
    if cfg.mesh.train.iters < 1 and cfg.mesh.enabled:
        raise InputError("--mesh-iters must be >= 1")
    if cfg.gauss.train.iters < 1:
        raise InputError("--gauss-iters must be >= 1")
    if cfg.data.size is not None and not 32 <= cfg.data.size <= 2048:
        raise InputError("--size must be between 32 and 2048")
    if cfg.gauss.anchor not in ANCHORS:
        raise InputError(f"unknown Gaussian anchor {cfg.gauss.anchor!r}; choose from {', '.join(ANCHORS)}")
    if cfg.gauss.anchor == "mesh" and (not cfg.mesh.enabled or cfg.gauss.retrain_deform):
        cfg.gauss.anchor = "free"  # the ablations without the stage-1 mesh / its MLP_deform
    if cfg.mesh.init not in MESH_INITS:
        raise InputError(f"unknown mesh init {cfg.mesh.init!r}; choose from {', '.join(MESH_INITS)}")
    if cfg.mesh.hull_face not in HULL_FACES:
        raise InputError(f"unknown mesh.hull_face {cfg.mesh.hull_face!r}; choose from {', '.join(HULL_FACES)}")
    if cfg.mesh.res < 4:
        raise InputError("mesh resolution must be >= 4")
    if cfg.prior.views < 1 and cfg.prior.backend != "none":
        raise InputError("prior views must be >= 1")
    cfg.data.background = tuple(float(b) for b in cfg.data.background)


def comparable(d: dict) -> dict:
    """The parts of a stored config that must match to resume (device may change)."""
    d = dict(d)
    d.pop("device", None)
    return d
