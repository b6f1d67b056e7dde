"""Text-guided, landmark-weighted editing of the reconstructed avatar (paper Sec. 3.3, docs/edit.md).

Renders the avatar at training views, edits the renders with a 2D editor at a random strength b
per update, and optimises the avatar's appearance with the L1 loss weighted per Gaussian by
w = 2*sigmoid(-alpha*d) (d = distance to the nearest 3D landmark) when b >= boundary and by 1-w
otherwise. Output: WORK/edits/NAME/ (avatar.pt, dataset/, previews/, metrics.json, checkpoint.pt).
A complete edit is a no-op unless --force; an interrupted one resumes; other options are refused,
naming them, unless --force (docs/FORMATS.md)."""

from __future__ import annotations

from ..hub import DEFAULT_EDITOR_MODEL
from ._args import add_device_argument, nonneg_float, positive_float, positive_int

# the fields of edit.options.EditOptions this command sets (each option's dest is the field name)
OPTIONS = ("editor", "editor_model", "iters", "alpha", "b_boundary", "b_mean", "b_std", "b_fixed", "update_every",
           "train", "lr", "lr_mlp", "seed", "ip2p_size", "ip2p_steps", "guidance_scale", "image_guidance_scale")


def add_arguments(p):
    from ..edit.options import EDITOR_NAMES, TRAINABLE, EditOptions

    d = EditOptions(prompt="")  # the defaults, in one place
    p.add_argument("work", metavar="WORK", nargs="?", help="work folder with a finished reconstruction")
    p.add_argument("--prompt", required=False, default=None,
                   help="edit instruction, e.g. \"turn him into a bronze statue\" (see --list-prompts)")
    p.add_argument("--name", default=None, help="edit name: output goes to WORK/edits/NAME/ (default: from the prompt)")
    p.add_argument("--editor", default=d.editor, choices=list(EDITOR_NAMES),
                   help="2D editor: builtin (offline, documented prompt vocabulary) or ip2p (Instruct-Pix2Pix) "
                        "(default %(default)s)")
    p.add_argument("--editor-model", default=d.editor_model, metavar="ID|PATH",
                   help="--editor ip2p: Hugging Face id or local diffusers folder of an Instruct-Pix2Pix pipeline "
                        f"(default {DEFAULT_EDITOR_MODEL}; ids are downloaded once into the Hugging Face cache)")
    add_device_argument(p)
    p.add_argument("--ip2p-size", type=positive_int, default=d.ip2p_size, metavar="PX",
                   help="ip2p: long side of the images given to the model (default %(default)s)")
    p.add_argument("--ip2p-steps", type=positive_int, default=d.ip2p_steps, metavar="N",
                   help="ip2p: DDIM steps of a full denoise (default %(default)s)")
    p.add_argument("--guidance", type=positive_float, default=d.guidance_scale, dest="guidance_scale", metavar="S",
                   help="ip2p: text guidance scale (default %(default)g)")
    p.add_argument("--image-guidance", type=positive_float, default=d.image_guidance_scale,
                   dest="image_guidance_scale", metavar="S", help="ip2p: image guidance scale (default %(default)g)")
    p.add_argument("--list-prompts", action="store_true", help="print the built-in editor's vocabulary and exit")
    p.add_argument("--iters", type=positive_int, default=d.iters, metavar="N", help="edit iterations (default %(default)s)")
    p.add_argument("--alpha", type=positive_float, default=d.alpha,
                   help="alpha of w = 2*sigmoid(-alpha*d), d in decimetres (default %(default)g)")
    p.add_argument("--b-boundary", type=float, default=d.b_boundary, metavar="B",
                   help="strength boundary of Eq. 8: weight w if b >= B, 1-w otherwise (default %(default)g)")
    p.add_argument("--b-mean", type=float, default=d.b_mean, help="mean of the random edit strength b (default %(default)g)")
    p.add_argument("--b-std", type=nonneg_float, default=d.b_std,
                   help="std of the random edit strength b (default %(default)g, as in the paper)")
    p.add_argument("--b-fixed", type=float, default=d.b_fixed, metavar="B", help="use a fixed edit strength instead of random b")
    p.add_argument("--no-landmark-weight", action="store_true", help="plain L1 (ablation: no landmark weighting)")
    p.add_argument("--update-every", type=positive_int, default=d.update_every, metavar="N",
                   help="re-edit the current view's training image every N iterations (default 1 for builtin, 10 for ip2p)")
    p.add_argument("--train", default=d.train, choices=list(TRAINABLE),
                   help="what is optimised (default %(default)s: a per-Gaussian colour residual); MLP_deform always "
                        "stays frozen")
    p.add_argument("--lr", type=positive_float, default=d.lr,
                   help="Adam learning rate of the per-Gaussian colour residual (default %(default)g)")
    p.add_argument("--lr-mlp", type=positive_float, default=d.lr_mlp,
                   help="learning rate of MLPs/opacity/scale when trained (default %(default)g)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the view order and of b (default %(default)s)")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out metrics (landmark detector runs)")
    p.add_argument("--force", action="store_true", help="redo a complete edit, or start an interrupted one over")


def run(args):
    from ..errors import InputError

    if args.list_prompts:
        from ..edit.builtin import vocabulary_text

        print("The built-in editor understands:\n" + vocabulary_text())
        return 0
    if not args.work:
        raise InputError("WORK is required: styletalker edit WORK --prompt \"...\"")
    if not args.prompt:
        raise InputError("--prompt is required (see --list-prompts for the built-in vocabulary)")
    from ..edit.loop import run_edit
    from ..workdir import read_json
    from ..workfolder import METRICS_FILE, PREVIEWS_DIR

    out = run_edit(args.work, args.prompt, name=args.name, force=args.force, progress_bars=not args.quiet,
                   evaluate=not args.no_eval, device=args.device,
                   weighting="none" if args.no_landmark_weight else "eq8", **{k: getattr(args, k) for k in OPTIONS})
    print(f"edited avatar: {out / 'avatar.pt'}")
    m = read_json(out / METRICS_FILE)
    if "heldout" in m:
        s = m["heldout"]
        print(f"held-out change inside face {s['inside_face']:.4f}, outside {s['outside_face']:.4f} "
              f"(ratio {s['inside_outside_ratio']:.1f}); landmark shift {s['landmark_px']:.2f} px; "
              f"previews: {out / PREVIEWS_DIR}")
    return 0
