"""Reconstruct the 3D Gaussian head avatar of a preprocessed work folder (paper Sec. 3.2).

Stage 1 fits a DMTet mesh (starting from the clip's visual hull closed at a head's depth) with an
expression-conditioned deformation field; a multi-view prior renders 18 views of the neutral frame
over 180 degrees; stage 2 trains Gaussians anchored to the mesh's triangles (deformation kept) on
the frames plus the prior views.
Held-out frames (every 10th) are scored with PSNR/SSIM (reconstruct/metrics.json).
Interrupted runs resume; a finished one is a no-op unless --force. See docs/reconstruct.md.
"""

from __future__ import annotations

from ._args import add_device_argument


def _per_preset(key: str) -> str:
    """``"test 40, cpu 1000, full 10000"``: the value each preset gives option ``key``."""
    from ..reconstruct.presets import PRESETS

    vals = [f"{name} {v[key]:g}" if isinstance(v.get(key), (int, float)) else f"{name} {v.get(key)}"
            for name, v in PRESETS.items() if key in v]
    return "by preset: " + ", ".join(vals) if vals else ""


def add_arguments(p):
    from ..reconstruct.presets import ALIASES, PRESETS, PRIORS

    p.add_argument("work", help="work folder (after `styletalker preprocess VIDEO WORK`)")
    p.add_argument("--preset", default="auto", choices=["auto", *PRESETS],
                   help="test: seconds (smoke test); cpu: <20 min on 2 cores; full: GPU, paper iteration counts; "
                        "auto: full with CUDA else cpu (default %(default)s)")
    add_device_argument(p)
    p.add_argument("--force", action="store_true",
                   help="discard an existing reconstruction (complete, interrupted, or made with other options) "
                        "and start over")
    g = p.add_argument_group("overrides (default: the preset's value)")
    for flag, dest, kind, text in (("--mesh-iters", "mesh_iters", int, "stage-1 (DMTet) iterations"),
                                   ("--gauss-iters", "gauss_iters", int, "stage-2 (Gaussian) iterations"),
                                   ("--mesh-res", "mesh_res", int, "tet grid resolution (cells per axis)"),
                                   ("--gauss-points", "gauss_points", int, "number of Gaussians")):
        g.add_argument(flag, dest=dest, type=kind, help=f"{text} ({_per_preset(ALIASES[dest])})")
    g.add_argument("--size", type=int, help="train/evaluate at this image size (default: the preprocessed size)")
    g.add_argument("--max-frames", type=int, help="use an evenly spaced subset of at most N frames (default: all)")
    g.add_argument("--prior", choices=list(PRIORS), help=f"multi-view prior backend (default {PRIORS[0]})")
    g.add_argument("--prior-model", metavar="ID|PATH",
                   help="--prior svd: a Hugging Face id or local folder of a diffusers StableVideoDiffusionPipeline")
    g.add_argument("--seed", type=int, help="random seed of the whole reconstruction")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="any option of the reconstruction config by its dotted name, e.g. gauss.anchor=free, "
                        "mesh.init=sphere, prior.views=6, gauss.train.densify.enabled=false (docs/reconstruct.md "
                        "lists them); repeatable. Values: true/false, numbers, comma lists, none (an option that may be "
                        "unset; for a text option the word itself, e.g. prior.backend=none)")
    a = p.add_argument_group("ablations (paper Table 5)")
    a.add_argument("--no-mesh", action="store_true", help="D1: no mesh stage; Gaussians from a unit sphere, MLP_deform trained from scratch")
    a.add_argument("--no-prior", action="store_true", help="w/o multi-view prior (same as --prior none)")
    a.add_argument("--retrain-deform", action="store_true", help="D2: mesh init but MLP_deform re-trained from scratch in stage 2")


def run(args):
    import inspect
    from pathlib import Path

    from ..errors import InputError
    from ..reconstruct import run_reconstruct
    from ..workdir import read_json
    from ..workfolder import METRICS_FILE

    from ..reconstruct.config import option_value, parse_assignment
    from ..reconstruct.pipeline import format_metrics, resolve_aliases

    if args.no_prior and args.prior not in (None, "none"):
        raise InputError("--no-prior conflicts with --prior " + args.prior)
    flags = resolve_aliases(dict(
        mesh_iters=args.mesh_iters, gauss_iters=args.gauss_iters, mesh_res=args.mesh_res, gauss_points=args.gauss_points,
        size=args.size, max_frames=args.max_frames, prior=args.prior, prior_model=args.prior_model, seed=args.seed,
        no_mesh=args.no_mesh, no_prior=args.no_prior, retrain_deform=args.retrain_deform or None))
    extra = resolve_aliases(dict(parse_assignment(a) for a in args.options))
    own = set(inspect.signature(run_reconstruct).parameters) - {"overrides"}
    for key in extra:
        if key in own:  # preset, device, ... : the command's own arguments, not options of the config
            raise InputError(f"--set {key}=...: give it as the command's own argument (see --help), not with --set")
        if key in flags and option_value(key, flags[key]) != option_value(key, extra[key]):
            raise InputError(f"--set {key}={extra[key]} contradicts its own flag's {flags[key]} (see --help); give it once")
    out = run_reconstruct(args.work, preset=args.preset, force=args.force, device=args.device, **{**flags, **extra})
    m = read_json(Path(out) / METRICS_FILE)
    print(f"{format_metrics(m)}  -> {out}/avatar.pt")
    return 0
