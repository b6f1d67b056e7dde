"""`styletalker` command line: one subcommand per pipeline stage.

Each subcommand lives in ``styletalker.commands.<name>`` and provides
``add_arguments(parser)`` and ``run(args) -> int | None``. Heavy imports (torch,
mediapipe) happen inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import StyleTalkerError

COMMANDS = {
    "preprocess": "Decode a talking-head video, track the face, write a training dataset.",
    "reconstruct": "Train the mesh stage (DMTet) then the 3D Gaussian head avatar.",
    "edit": "Text-guided, landmark-weighted editing of a reconstructed avatar.",
    "animate": "Drive the (edited) avatar with expressions and pose from another video.",
    "render": "Render the avatar: orbit videos, single views, .ply export.",
    "view": "Look at the avatar in a web browser: expressions, head pose, edits A/B, live driving.",
    "evaluate": "Compute and print metrics for a work folder.",
    "batch": "Run many videos through the pipeline, locally or on a Ray cluster.",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="styletalker",
        description="Turn a monocular talking-head video into an editable, animatable 3D Gaussian avatar.",
    )
    parser.add_argument("--version", action="version", version=f"styletalker {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        mod = importlib.import_module(f".commands.{name}", __package__)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .native_log import filtered_stderr
    from .workdir import is_quiet, set_quiet

    was_quiet = is_quiet()
    set_quiet(args.quiet)  # for this command only (main() is also called in-process, e.g. by tests)
    try:
        with filtered_stderr():  # MediaPipe's start-up log lines, whenever its threads write them
            rc = args._module.run(args)
    except StyleTalkerError as e:
        print(f"styletalker {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"styletalker {args.command}: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` & co.: stop quietly, as Unix tools do
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    finally:
        set_quiet(was_quiet)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
