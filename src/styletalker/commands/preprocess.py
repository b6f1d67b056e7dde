"""Decode a talking-head video, track the face (478 landmarks, 52 blendshapes, head pose), crop
and mask the head, and write the training dataset to WORK/preprocess/ (docs/preprocess.md).

A complete stage is a no-op on re-run unless --force; an interrupted run resumes when re-run
with the same options; other options are refused, naming them, unless --force (docs/FORMATS.md)."""

from __future__ import annotations

from ._args import add_clip_window, positive_float, positive_int

# the options of preprocess.options.TrackOptions this command exposes (dest = field name)
OPTIONS = ("start", "duration", "fps", "max_frames", "size", "min_frames", "max_lost", "smooth", "fov", "hands")


def add_arguments(p):
    from ..preprocess.options import TrackOptions

    d = TrackOptions()  # the defaults, in one place
    p.add_argument("video", metavar="VIDEO", help="input video (any format PyAV/ffmpeg reads)")
    p.add_argument("work", metavar="WORK", help="work folder; output goes to WORK/preprocess/")
    add_clip_window(p, d)
    p.add_argument("--size", type=positive_int, default=d.size, metavar="PX", help="side of the square head crop (default %(default)s)")
    p.add_argument("--min-frames", type=positive_int, default=d.min_frames, metavar="N",
                   help="fail if fewer than N frames with a face are kept (default %(default)s)")
    p.add_argument("--max-lost", type=float, default=d.max_lost, metavar="FRAC",
                   help="fail if the face is lost in more than this fraction of frames (default %(default)g)")
    p.add_argument("--smooth", type=float, default=d.smooth, metavar="SEC",
                   help="temporal smoothing of the head pose, Gaussian sigma in seconds (0 = off, default %(default)g)")
    p.add_argument("--fov", type=positive_float, default=d.fov, metavar="DEG",
                   help="vertical field of view of the video's camera in degrees (default %(default)g, a phone or "
                        "webcam; give the real value when known, e.g. ~20 for a studio camera with a long lens): "
                        "it sets how strongly the head's depth shows in perspective")
    p.add_argument("--no-hands", dest="hands", action="store_false", default=d.hands,
                   help="do not look for hands in front of the face (by default MediaPipe Hands finds them; their "
                        "pixels go to occluders/ and are left out of training and scoring, and the neutral frame is "
                        "one without a hand over the face)")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay.mp4 checking video")
    p.add_argument("--force", action="store_true", help="redo a complete stage, or start an interrupted one over")


def run(args):
    from ..preprocess import run_preprocess, summary_line
    from ..workdir import is_complete
    from ..workfolder import WorkFolder

    was_complete = is_complete(WorkFolder(args.work).preprocess)
    out = run_preprocess(args.video, args.work, force=args.force, progress=not args.quiet, overlay=not args.no_overlay,
                         **{k: getattr(args, k) for k in OPTIONS})
    if not (was_complete and not args.force):
        print(summary_line(out))
    return 0
