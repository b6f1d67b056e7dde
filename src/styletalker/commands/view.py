"""Look at the avatar of a work folder in a web browser (docs/viewer.md): orbit and zoom with the
mouse, sliders for the 52 expression blendshapes and the head pose, presets, the original next to
an edit (A/B split), playback of the training clip, live driving from a camera or a video, PNG and
.ply export. Needs the viewer extra (pip install -e ".[viewer]")."""

from __future__ import annotations

from ._args import add_device_argument, positive_int


def add_arguments(p):
    from ..viewer.app import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_RESOLUTION

    p.add_argument("work", metavar="WORK", help="work folder with a finished reconstruction (or an avatar .pt file)")
    p.add_argument("--edit", default=None, metavar="NAME", help="start with the edited avatar WORK/edits/NAME/")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to serve on (default {DEFAULT_PORT}; the next free one when taken; 0: any free port)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every network)")
    p.add_argument("--resolution", type=positive_int, default=DEFAULT_RESOLUTION, metavar="PX",
                   help=f"longer side of the rendered image in pixels (default {DEFAULT_RESOLUTION})")
    add_device_argument(p)


def run(args):
    from ..viewer.app import Viewer

    Viewer(args.work, edit=args.edit, host=args.host, port=args.port, device=args.device,
           resolution=args.resolution, verbose=not args.quiet).serve_forever()
    return 0
