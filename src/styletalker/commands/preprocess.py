"""Decode a talking-head video, track the face (478 landmarks, 52 blendshapes, head pose), crop
and mask the head, and write the training dataset to WORK/preprocess/ (docs/preprocess.md).

A complete stage is a no-op on re-run unless --force; an interrupted run resumes when re-run
with the same options."""

from __future__ import annotations

from ._args import positive_float, positive_int


def add_arguments(p):
    p.add_argument("video", metavar="VIDEO", help="input video (any format PyAV/ffmpeg reads)")
    p.add_argument("work", metavar="WORK", help="work folder; output goes to WORK/preprocess/")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start time in seconds (default 0)")
    p.add_argument("--duration", type=positive_float, default=None, metavar="D", help="seconds to use (default: to the end)")
    p.add_argument("--fps", type=positive_float, default=None, metavar="F", help="subsample to at most F frames/s (default: all frames)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop after N decoded frames")
    p.add_argument("--size", type=positive_int, default=256, metavar="PX", help="side of the square head crop (default 256)")
    p.add_argument("--min-frames", type=positive_int, default=8, metavar="N",
                   help="fail if fewer than N frames with a face are kept (default 8)")
    p.add_argument("--max-lost", type=float, default=0.5, metavar="FRAC",
                   help="fail if the face is lost in more than this fraction of frames (default 0.5)")
    p.add_argument("--smooth", type=float, default=0.04, metavar="SEC",
                   help="temporal smoothing of the head pose, Gaussian sigma in seconds (0 = off, default 0.04)")
    from ..preprocess.mp_models import FOV_Y_DEG

    p.add_argument("--fov", type=positive_float, default=FOV_Y_DEG, metavar="DEG",
                   help=f"vertical field of view of the video's camera in degrees (default {FOV_Y_DEG:g}, a phone or "
                        "webcam; give the real value when known, e.g. ~20 for a studio camera with a long lens): "
                        "it sets how strongly the head's depth shows in perspective")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay.mp4 checking video")
    p.add_argument("--force", action="store_true", help="redo a complete stage")


def run(args):
    from ..preprocess import run_preprocess, summary_line
    from ..workdir import is_complete
    from ..workfolder import WorkFolder

    was_complete = is_complete(WorkFolder(args.work).preprocess)
    out = run_preprocess(
        args.video,
        args.work,
        start=args.start,
        duration=args.duration,
        fps=args.fps,
        max_frames=args.max_frames,
        size=args.size,
        force=args.force,
        progress=not args.quiet,
        min_frames=args.min_frames,
        max_lost=args.max_lost,
        smooth=args.smooth,
        overlay=not args.no_overlay,
        fov=args.fov,
    )
    if not (was_complete and not args.force):
        print(summary_line(out))
    return 0
