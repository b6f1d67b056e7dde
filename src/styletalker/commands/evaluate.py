"""Compute and print metrics for a work folder.

Reconstruction: re-renders the held-out frames (every 10th frame, never trained on) from
reconstruct/avatar.pt and prints PSNR / SSIM (whole frame on the constant background) and PSNR
inside the head mask; updates reconstruct/metrics.json unless --no-write.
Edits: prints the metrics of every work/edits/*/metrics.json written by `styletalker edit`.
Paper metrics (docs/FORMATS.md): LPIPS of the held-out frames (reconstruct/metrics.json "lpips"),
and for every finished edit, on an orbit of the edited vs. the original avatar, CLIP-S, CLIP-DS,
dlib identity distance and LPIPS (edits/NAME/metrics.json "orbit"). Models by Hugging Face id or
folder; a metric whose model cannot be had is reported as "unavailable: <why>".
Other cameras: with --views OTHER_WORK (a second camera filming the same session, preprocessed
into its own work folder), the avatar is rendered with that camera's tracked head pose and this
clip's expressions at the same instants and scored against its frames, as rendered, after a
2D similarity alignment on landmarks per frame, and after one rigid pose correction for the
whole camera fitted on landmarks (docs/reconstruct.md, "Novel views"); results go to
reconstruct/metrics.json under "views" and contact sheets to reconstruct/renders/views_<name>.png.
Turned away: with --turn, the avatar (neutral expression) turned by -60..60 degrees in 15-degree
steps, each render given to MediaPipe (face found? which yaw does it track?) and checked for the
backdrop's colour; results under "turn" in reconstruct/metrics.json, the renders side by side in
reconstruct/renders/turn.png (a red frame where no face was found).
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("work", help="work folder")
    p.add_argument("--no-write", action="store_true", help="do not update reconstruct/ and edits/*/metrics.json")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_metric_arguments(p)
    p.add_argument("--views", action="append", default=[], metavar="OTHER_WORK",
                   help="score against a synchronised second camera preprocessed into OTHER_WORK "
                        "(frame k of both videos is the same instant); repeat for more cameras")
    p.add_argument("--turn", action="store_true",
                   help="turn the avatar by -60..60 degrees (15-degree steps): is a face found (MediaPipe), at "
                        "which yaw, and how much of the backdrop's colour do the renders hold; contact sheet "
                        "reconstruct/renders/turn.png")


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            yield f"{prefix}{k}", v


def _add_metric_arguments(p):
    from ..evaluation import ORBIT_DEGREES, ORBIT_VIEWS, SOURCE_CAPTION
    from ..hub import DEFAULT_CLIP_MODEL, DEFAULT_LPIPS_MODEL
    from ._args import add_device_argument, positive_float, positive_int

    add_device_argument(p)
    g = p.add_argument_group("paper metrics")
    g.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL, metavar="ID|PATH",
                   help=f"CLIP for CLIP-S / CLIP-DS: Hugging Face id or local folder (default {DEFAULT_CLIP_MODEL})")
    g.add_argument("--lpips-model", default=DEFAULT_LPIPS_MODEL, metavar="ID|PATH",
                   help=f"AlexNet weights for LPIPS: file, folder, Hugging Face id, or {DEFAULT_LPIPS_MODEL} = "
                        f"torchvision's in the torch hub cache (default)")
    g.add_argument("--source-caption", default=SOURCE_CAPTION,
                   help=f"caption of the unedited avatar for CLIP-DS (default {SOURCE_CAPTION!r})")
    g.add_argument("--orbit-views", type=positive_int, default=ORBIT_VIEWS, metavar="N",
                   help=f"orbit views per edit (default {ORBIT_VIEWS})")
    g.add_argument("--orbit-degrees", type=positive_float, default=ORBIT_DEGREES, metavar="DEG",
                   help=f"orbit sweep, -DEG/2..DEG/2 (default {ORBIT_DEGREES:g})")


def _finished_edits(work) -> list:
    from ..workfolder import WorkFolder

    wf = WorkFolder(work)
    return [wf.edit(name) for name in wf.finished_edits()]


def _metric_models(args, work) -> dict:
    """The CLIP scorer (only when there are finished edits) and LPIPS, each with why it is missing."""
    from ..clip_metrics import ClipScorer
    from ..device import resolve_device
    from ..evaluation import load_or_reason
    from ..perceptual import load_lpips

    device = resolve_device(args.device)
    clip, clip_reason = (load_or_reason(ClipScorer, args.clip_model, device) if _finished_edits(work)
                         else (None, "no finished edit"))
    lp, lp_reason = load_or_reason(load_lpips, args.lpips_model, device)
    return {"device": device, "clip": clip, "clip_reason": clip_reason, "lpips": lp, "lpips_reason": lp_reason}


def _reconstruct_lpips(work, models, write: bool):
    """LPIPS of the held-out frames (or why not); stored in reconstruct/metrics.json when ``write``."""
    from ..evaluation import heldout_lpips, unavailable
    from ..workdir import atomic_write_json, read_json
    from ..workfolder import WorkFolder

    if models["lpips"] is None:
        r = {"lpips": unavailable(models["lpips_reason"]), "per_frame": []}
    else:
        r = heldout_lpips(work, models["lpips"], models["device"])
    if write:
        path = WorkFolder(work).metrics()
        m = read_json(path)
        m["lpips"] = r["lpips"]
        for f in m.get("per_frame", []):
            f.update(next((p for p in r["per_frame"] if p["frame"] == f.get("frame")), {}))
        atomic_write_json(path, m)
    return r["lpips"]


def _edit_metrics(work, models, args) -> dict:
    """Orbit metrics of every finished edit; stored under "orbit" in its metrics.json unless --no-write."""
    from ..evaluation import edit_orbit_metrics
    from ..workdir import atomic_write_json, read_json
    from ..workfolder import CONFIG_FILE, METRICS_FILE

    out = {}
    for folder in _finished_edits(work):
        prompt = read_json(folder / CONFIG_FILE)["prompt"]
        m = edit_orbit_metrics(work, folder.name, prompt, clip=models["clip"], clip_reason=models["clip_reason"],
                               lpips=models["lpips"], lpips_reason=models["lpips_reason"], device=models["device"],
                               views=args.orbit_views, degrees=args.orbit_degrees, source_caption=args.source_caption)
        if not args.no_write and (folder / METRICS_FILE).is_file():
            old = read_json(folder / METRICS_FILE)
            old["orbit"] = m
            atomic_write_json(folder / METRICS_FILE, old)
        out[folder.name] = m
    return out


def run(args):
    from contextlib import nullcontext
    from pathlib import Path

    from ..errors import InputError
    from ..workfolder import WorkFolder

    work = Path(args.work)
    if not work.is_dir():
        raise InputError(f"{work}: work folder not found")
    with nullcontext() if args.no_write else WorkFolder(work).lock("evaluate"):  # it writes metrics.json
        return _evaluate(work, args)


def _evaluate(work, args):
    import json

    from ..reconstruct.evaluate import recompute_metrics
    from ..workdir import read_json
    from ..workfolder import METRICS_FILE, WorkFolder

    report = {}
    rec = recompute_metrics(work, write=not args.no_write)
    report["reconstruct"] = rec
    models = _metric_models(args, work)
    rec["lpips"] = _reconstruct_lpips(work, models, write=not args.no_write)
    edits = {}
    for p in sorted(WorkFolder(work).edits.glob(f"*/{METRICS_FILE}")):
        try:
            edits[p.parent.name] = read_json(p)
        except (OSError, ValueError) as e:
            edits[p.parent.name] = {"error": f"unreadable metrics.json ({e})"}
    report["edits"] = edits
    for name, m in _edit_metrics(work, models, args).items():
        edits.setdefault(name, {})["orbit"] = m
    if args.views:
        report["reconstruct"]["views"] = _views(work, args.views, write=not args.no_write, quiet=args.quiet)
    if args.turn:
        report["reconstruct"]["turn"] = _turn(work, write=not args.no_write)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    if rec.get("psnr") is None:
        print("reconstruct: no held-out frames to score")
    else:
        print(f"reconstruct ({len(rec['heldout_frames'])} held-out frames): PSNR {rec['psnr']:.2f} dB  "
              f"SSIM {rec['ssim']:.4f}  PSNR(head) {rec['psnr_head']:.2f} dB")
    print(f"  LPIPS: {_fmt(rec['lpips'])}")
    if rec.get("mesh"):
        print(f"  stage-1 mesh:   PSNR {rec['mesh']['psnr']:.2f} dB  SSIM {rec['mesh']['ssim']:.4f}")
    from ..crossview import format_scores

    for name, r in (rec.get("views") or {}).items():
        print(format_scores(f"camera {name}", r))
    if rec.get("turn"):
        from ..crossview import format_sweep

        print(format_sweep(rec["turn"]))
    if not edits:
        print("edits: none")
    for name, m in edits.items():
        print(f"edit {name}:")
        for k, v in _flat(m):
            print(f"  {k}: {_fmt(v)}")
    return 0


def _views(work, others, write: bool, quiet: bool) -> dict:
    """Cross-camera scores of the reconstruction against each other camera's work folder."""
    from pathlib import Path

    from ..crossview import cross_view_scores
    from ..workdir import atomic_write_json, read_json

    from ..workfolder import WorkFolder

    wf = WorkFolder(work)
    out = {}
    for other in others:
        name = Path(other).resolve().name
        r = cross_view_scores(work, other, sheet=wf.reconstruct_renders / f"views_{name}.png", show_progress=not quiet)
        out[name] = r
    if write:
        m = read_json(wf.metrics())
        m.setdefault("views", {}).update(out)
        atomic_write_json(wf.metrics(), m)
    return out


def _turn(work, write: bool) -> dict:
    """The turn-away check of the reconstruction (crossview.yaw_sweep); stored under "turn"."""
    from ..crossview import yaw_sweep
    from ..workdir import atomic_write_json, read_json
    from ..workfolder import WorkFolder

    wf = WorkFolder(work)
    r = yaw_sweep(work, sheet=wf.reconstruct_renders / "turn.png")
    if write:
        m = read_json(wf.metrics())
        m["turn"] = r
        atomic_write_json(wf.metrics(), m)
    return r
