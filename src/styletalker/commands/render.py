"""Render the (edited) avatar: a rotating --orbit video, a single image (--frame I or the reference
view), or a --ply export of the neutral-expression Gaussians (docs/animate.md). AVATAR is a work
folder (its reconstructed avatar, or --edit NAME) or an avatar .pt file."""

from __future__ import annotations

from ._args import add_device_argument, positive_float, positive_int

# the options of animate_options.OrbitOptions / ViewOptions this command exposes (dest = field name)
ORBIT_OPTIONS = {"frames": "frames", "degrees": "degrees", "fps": "fps", "orbit_mode": "mode", "scale": "scale"}
VIEW_OPTIONS = ("frame", "yaw", "scale")


def add_arguments(p):
    from ..animate_options import ORBIT_DEGREES, ORBIT_MODES, OrbitOptions, ViewOptions

    o, v = OrbitOptions(), ViewOptions()  # the defaults, in one place
    p.add_argument("avatar", metavar="AVATAR", help="work folder or avatar .pt file")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="output: .mp4 with --orbit, .png/.jpg otherwise (default under WORK/renders/)")
    p.add_argument("--edit", default=None, metavar="NAME", help="use the edited avatar WORK/edits/NAME/")
    p.add_argument("--orbit", action="store_true", help="rotating video around the head")
    p.add_argument("--frames", type=positive_int, default=o.frames, help="orbit frames (default %(default)s)")
    p.add_argument("--degrees", type=positive_float, default=o.degrees,
                   help=f"orbit sweep in degrees (default {ORBIT_DEGREES:g}: {-ORBIT_DEGREES / 2:+g}..{ORBIT_DEGREES / 2:+g})")
    p.add_argument("--orbit-mode", default=o.mode, choices=list(ORBIT_MODES),
                   help=f"swing: seamless back-and-forth loop; turn: one sweep left to right (default {o.mode})")
    p.add_argument("--fps", type=positive_float, default=o.fps, help="orbit video frame rate (default %(default)g)")
    p.add_argument("--frame", type=int, default=v.frame, metavar="I",
                   help="render the pose and expression of preprocessed frame I (image output)")
    p.add_argument("--yaw", type=float, default=v.yaw, metavar="DEG",
                   help="turn the head by DEG degrees (image output; default %(default)g)")
    p.add_argument("--scale", type=positive_float, default=v.scale,
                   help="render at SCALE x the avatar's image size (default %(default)g)")
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
