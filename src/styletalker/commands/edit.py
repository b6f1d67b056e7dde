"""Text-guided, landmark-weighted editing of the reconstructed avatar (paper Sec. 3.3, docs/edit.md).

Renders the avatar at training views, edits the renders with a 2D editor at a random strength b
per update, and optimises the avatar's appearance with the L1 loss weighted per Gaussian by
w = 2*sigmoid(-alpha*d) (d = distance to the nearest 3D landmark) when b >= boundary and by 1-w
otherwise. Output: WORK/edits/NAME/ (avatar.pt, dataset/, previews/, metrics.json, checkpoint.pt).
A complete edit is a no-op unless --force; an interrupted one resumes."""

from __future__ import annotations

from ..hub import DEFAULT_EDITOR_MODEL
from ._args import add_device_argument, nonneg_float, positive_float, positive_int


def add_arguments(p):
    p.add_argument("work", metavar="WORK", nargs="?", help="work folder with a finished reconstruction")
    p.add_argument("--prompt", required=False, default=None,
                   help="edit instruction, e.g. \"turn him into a bronze statue\" (see --list-prompts)")
    p.add_argument("--name", default=None, help="edit name: output goes to WORK/edits/NAME/ (default: from the prompt)")
    p.add_argument("--editor", default="builtin", choices=["builtin", "ip2p"],
                   help="2D editor: builtin (offline, documented prompt vocabulary) or ip2p (Instruct-Pix2Pix)")
    p.add_argument("--editor-model", default=None, metavar="ID|PATH",
                   help="--editor ip2p: Hugging Face id or local diffusers folder of an Instruct-Pix2Pix pipeline "
                        f"(default {DEFAULT_EDITOR_MODEL}; ids are downloaded once into the Hugging Face cache)")
    add_device_argument(p)
    p.add_argument("--ip2p-size", type=positive_int, default=512, metavar="PX",
                   help="ip2p: long side of the images given to the model (default 512)")
    p.add_argument("--ip2p-steps", type=positive_int, default=20, help="ip2p: DDIM steps of a full denoise (default 20)")
    p.add_argument("--guidance", type=positive_float, default=7.5, help="ip2p: text guidance scale (default 7.5)")
    p.add_argument("--image-guidance", type=positive_float, default=1.5, help="ip2p: image guidance scale (default 1.5)")
    p.add_argument("--list-prompts", action="store_true", help="print the built-in editor's vocabulary and exit")
    p.add_argument("--iters", type=positive_int, default=300, metavar="N", help="edit iterations (default 300)")
    p.add_argument("--alpha", type=positive_float, default=5.0, help="alpha of w = 2*sigmoid(-alpha*d), d in decimetres (default 5)")
    p.add_argument("--b-boundary", type=float, default=0.5, metavar="B",
                   help="strength boundary of Eq. 8: weight w if b >= B, 1-w otherwise (default 0.5)")
    p.add_argument("--b-mean", type=float, default=0.5, help="mean of the random edit strength b (default 0.5)")
    p.add_argument("--b-std", type=nonneg_float, default=1.0, help="std of the random edit strength b (default 1.0, as in the paper)")
    p.add_argument("--b-fixed", type=float, default=None, metavar="B", help="use a fixed edit strength instead of random b")
    p.add_argument("--no-landmark-weight", action="store_true", help="plain L1 (ablation: no landmark weighting)")
    p.add_argument("--update-every", type=positive_int, default=None, metavar="N",
                   help="re-edit the current view's training image every N iterations (default 1 for builtin, 10 for ip2p)")
    p.add_argument("--train", default="color", choices=["color", "color+mlp", "color+attr", "all-appearance"],
                   help="what is optimised (default: a per-Gaussian colour residual); MLP_deform always stays frozen")
    p.add_argument("--lr", type=positive_float, default=0.02, help="Adam learning rate of the per-Gaussian colour residual (default 0.02)")
    p.add_argument("--lr-mlp", type=positive_float, default=2e-3, help="learning rate of MLPs/opacity/scale when trained (default 2e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-eval", action="store_true", help="skip the held-out metrics (landmark detector runs)")
    p.add_argument("--force", action="store_true", help="redo a complete edit")


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

    out = run_edit(
        args.work, args.prompt, name=args.name, force=args.force, progress_bars=not args.quiet,
        evaluate=not args.no_eval, editor=args.editor, editor_model=args.editor_model, iters=args.iters,
        alpha=args.alpha, b_boundary=args.b_boundary, b_mean=args.b_mean, b_std=args.b_std,
        b_fixed=args.b_fixed, weighting="none" if args.no_landmark_weight else "eq8",
        update_every=args.update_every, train=args.train, lr=args.lr, lr_mlp=args.lr_mlp, seed=args.seed,
        ip2p_size=args.ip2p_size, ip2p_steps=args.ip2p_steps, guidance_scale=args.guidance,
        image_guidance_scale=args.image_guidance, device=args.device,
    )
    print(f"edited avatar: {out / 'avatar.pt'}")
    m = read_json(out / "metrics.json")
    if "heldout" in m:
        s = m["heldout"]
        print(f"held-out change inside face {s['inside_face']:.4f}, outside {s['outside_face']:.4f} "
              f"(ratio {s['inside_outside_ratio']:.1f}); landmark shift {s['landmark_px']:.2f} px; "
              f"previews: {out / 'previews'}")
    return 0
