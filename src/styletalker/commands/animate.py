"""Drive the (edited) avatar with the expressions and head motion of another person's video
(docs/animate.md). AVATAR is a work folder (its reconstructed avatar, or --edit NAME) or an avatar
.pt file. The driver is tracked with the preprocessing face tracker; its head motion relative to
its mean pose is applied to the avatar's own reference pose."""

from __future__ import annotations

from ._args import add_clip_window, add_device_argument, positive_float, positive_int

# the options of animate_options.DriveOptions this command exposes (dest = field name)
OPTIONS = ("start", "duration", "max_frames", "fps", "pose", "retarget", "expression_gain", "side_by_side", "scale")


def add_arguments(p):
    from ..animate_options import POSE_MODES, RETARGET_MODES, DriveOptions

    d = DriveOptions()  # the defaults, in one place
    p.add_argument("avatar", metavar="AVATAR", help="work folder or avatar .pt file")
    p.add_argument("--driver", required=True, metavar="VIDEO",
                   help="driving video (one visible face), or a camera index (0, 1, ...) to drive the avatar live "
                        "as the camera's frames arrive, until Ctrl-C or --duration (docs/viewer.md)")
    p.add_argument("-o", "--output", default=None, metavar="OUT.mp4",
                   help="output video (default WORK/renders/animate_<driver>[_<edit>].mp4)")
    p.add_argument("--edit", default=None, metavar="NAME", help="use the edited avatar WORK/edits/NAME/")
    add_clip_window(p, d, "driver")
    p.add_argument("--pose", default=d.pose, choices=list(POSE_MODES),
                   help=f"head motion: relative (rotation+translation), rotation only, none (expressions only); "
                        f"default {d.pose}")
    p.add_argument("--retarget", default=d.retarget, choices=list(RETARGET_MODES),
                   help="expressions: auto = map each channel from the driver's own range onto the avatar's, "
                        "but never shrink it (a driver's wide-open mouth stays wide on an avatar whose clip "
                        "barely opened it; its expression basis goes past the trained range for it); "
                        "range = map it onto the avatar's range and clamp it there (the default before); "
                        f"raw = the driver's blendshapes as tracked (default {d.retarget}; docs/animate.md)")
    p.add_argument("--expression-gain", type=positive_float, default=d.expression_gain, metavar="G",
                   help="with --retarget auto or range: >1 exaggerates, <1 damps the driver's expressions (default %(default)g)")
    p.add_argument("--side-by-side", action="store_true", default=d.side_by_side,
                   help="put the driver's face crop left of the avatar")
    p.add_argument("--scale", type=positive_float, default=d.scale,
                   help="render at SCALE x the avatar's image size (default %(default)g)")
    add_device_argument(p)


def run(args):
    from ..animate import run_animate
    from ..live import camera_index

    if camera_index(args.driver) is not None:
        return _run_live(args)

    res = run_animate(args.avatar, args.driver, args.output, edit=args.edit, device=args.device, start=args.start,
                      duration=args.duration, max_frames=args.max_frames, fps=args.fps, pose=args.pose,
                      side_by_side=args.side_by_side, scale=args.scale, retarget=args.retarget,
                      expression_gain=args.expression_gain, show_progress=not args.quiet)
    print(f"animation: {res['output']} ({res['frames']} frames at {res['fps']:g} fps)")
    return 0


def _run_live(args):
    from ..errors import InputError
    from ..live import run_live

    for flag, value in (("--start", args.start), ("--fps", args.fps), ("--side-by-side", args.side_by_side)):
        if value:
            raise InputError(f"{flag} is for driver videos; it does not apply to a live camera")
    res = run_live(args.avatar, args.driver, args.output, edit=args.edit, device=args.device, duration=args.duration,
                   max_frames=args.max_frames, pose=args.pose, retarget=args.retarget,
                   expression_gain=args.expression_gain, scale=args.scale, show_progress=not args.quiet)
    print(f"animation: {res['output']} ({res['frames']} frames at {res['fps']:g} fps; avatar updated at "
          f"{res['live']['fps']:g} frames/s, {res['live']['latency_ms_median']:g} ms behind the camera)")
    return 0
