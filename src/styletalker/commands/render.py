"""Render the (edited) avatar: a rotating --orbit video, a single image (--frame I or the reference
view), or a --ply export of the neutral-expression Gaussians (docs/animate.md). AVATAR is a work
folder (its reconstructed avatar, or --edit NAME) or an avatar .pt file."""

from __future__ import annotations

from ._args import add_device_argument, positive_float, positive_int


def add_arguments(p):
    p.add_argument("avatar", metavar="AVATAR", help="work folder or avatar .pt file")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="output: .mp4 with --orbit, .png/.jpg otherwise (default under WORK/renders/)")
    p.add_argument("--edit", default=None, metavar="NAME", help="use the edited avatar WORK/edits/NAME/")
    p.add_argument("--orbit", action="store_true", help="rotating video around the head")
    p.add_argument("--frames", type=positive_int, default=60, help="orbit frames (default 60)")
    p.add_argument("--degrees", type=positive_float, default=None, help="orbit sweep in degrees (default 90: -45..+45)")
    p.add_argument("--orbit-mode", default="swing", choices=["swing", "turn"],
                   help="swing: seamless back-and-forth loop (default); turn: one sweep left to right")
    p.add_argument("--fps", type=positive_float, default=25.0, help="orbit video frame rate (default 25)")
    p.add_argument("--frame", type=int, default=None, metavar="I",
                   help="render the pose and expression of preprocessed frame I (image output)")
    p.add_argument("--yaw", type=float, default=0.0, metavar="DEG", help="turn the head by DEG degrees (image output)")
    p.add_argument("--scale", type=positive_float, default=1.0, help="render at SCALE x the avatar's image size")
    p.add_argument("--ply", default=None, metavar="OUT.ply",
                   help="export the Gaussians (neutral expression) as a standard 3DGS .ply")
    add_device_argument(p)


def run(args):
    from pathlib import Path

    from ..errors import InputError

    did = False
    if args.ply:
        from ..animate import load_scene

        import torch

        from ..render.ply import save_ply

        if not str(args.ply).lower().endswith(".ply"):
            raise InputError(f"{args.ply}: the --ply output must end in .ply")
        scene = load_scene(args.avatar, args.edit)
        with torch.no_grad():
            g = scene.avatar(scene.neutral_expression)
        save_ply(Path(args.ply), g.means, g.quats, g.scales, g.opacities, g.colors.clamp(0, 1))
        print(f"ply: {args.ply} ({g.means.shape[0]} Gaussians)")
        did = True
    if args.orbit:
        if args.frame is not None:
            raise InputError("--frame is for single images; it cannot be combined with --orbit")
        from ..animate import render_orbit

        res = render_orbit(args.avatar, args.output, edit=args.edit, frames=args.frames, degrees=args.degrees,
                           fps=args.fps, mode=args.orbit_mode, scale=args.scale, show_progress=not args.quiet,
                           device=args.device)
        print(f"orbit video: {res['output']} ({res['frames']} frames)")
        return 0
    if args.output is None and did:
        return 0
    from ..animate import render_view, resolve_avatar_path
    from ..workfolder import WorkFolder

    out = args.output
    if out is None:
        _, work = resolve_avatar_path(args.avatar, args.edit)
        base = WorkFolder(work).renders if work is not None else Path(".")
        tag = f"frame{args.frame:06d}" if args.frame is not None else "view"
        out = base / f"{tag}{'_' + args.edit if args.edit else ''}.png"
    res = render_view(args.avatar, out, edit=args.edit, frame=args.frame, yaw=args.yaw, scale=args.scale,
                      device=args.device)
    print(f"image: {res['output']}")
    return 0
