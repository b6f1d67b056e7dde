"""The command line takes its defaults and choices from the option dataclasses and presets (one
place per default), explains every option in --help, and builds its parser without torch."""

from __future__ import annotations

import argparse
import subprocess
import sys

from styletalker.cli import COMMANDS, build_parser
from styletalker.commands import edit as edit_cmd
from styletalker.commands import preprocess as preprocess_cmd
from styletalker.edit.options import EDITOR_NAMES, TRAINABLE, EditOptions
from styletalker.preprocess.options import TrackOptions
from styletalker.reconstruct.presets import PRESETS, PRIORS


def _sub(parser, name):
    sp = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sp.choices[name]


def test_defaults_and_choices_come_from_the_dataclasses():
    p = build_parser()
    a = p.parse_args(["edit", "w", "--prompt", "x"])
    d = EditOptions(prompt="x")
    assert {k: getattr(a, k) for k in edit_cmd.OPTIONS} == {k: getattr(d, k) for k in edit_cmd.OPTIONS}
    a = p.parse_args(["preprocess", "v.mp4", "w"])
    t = TrackOptions()
    assert {k: getattr(a, k) for k in preprocess_cmd.OPTIONS} == {k: getattr(t, k) for k in preprocess_cmd.OPTIONS}
    choices = {act.dest: act.choices for name in COMMANDS for act in _sub(p, name)._actions if act.choices}
    assert list(choices["editor"]) == list(EDITOR_NAMES) and list(choices["train"]) == list(TRAINABLE)
    assert list(choices["preset"]) == ["auto", *PRESETS] and list(choices["prior"]) == list(PRIORS)
    # the reconstruct overrides say what each preset sets
    help_text = _sub(p, "reconstruct").format_help().replace("\n", " ")
    assert all(f"{name} {PRESETS[name]['mesh.train.iters']}" in " ".join(help_text.split()) for name in PRESETS)


def test_render_and_animate_defaults_come_from_their_dataclasses():
    """`render` / `animate` take their defaults and choices from styletalker.animate_options, and so do
    the functions they call (run_animate, run_live, render_orbit, render_view)."""
    import inspect
    from dataclasses import asdict

    from styletalker import animate, live
    from styletalker.animate_options import (ORBIT_MODES, POSE_MODES, RETARGET_MODES, DriveOptions, OrbitOptions,
                                             ViewOptions)
    from styletalker.commands import animate as animate_cmd
    from styletalker.commands import render as render_cmd

    p = build_parser()
    d, o, v = DriveOptions(), OrbitOptions(), ViewOptions()
    a = p.parse_args(["animate", "w", "--driver", "d.mp4"])
    assert {k: getattr(a, k) for k in animate_cmd.OPTIONS} == asdict(d)
    a = p.parse_args(["render", "w"])
    assert {f: getattr(a, k) for k, f in render_cmd.ORBIT_OPTIONS.items()} == asdict(o)
    assert {k: getattr(a, k) for k in render_cmd.VIEW_OPTIONS} == asdict(v)
    choices = {act.dest: act.choices for name in ("render", "animate") for act in _sub(p, name)._actions
               if act.choices}
    assert (list(choices["pose"]), list(choices["retarget"]), list(choices["orbit_mode"])) == (
        list(POSE_MODES), list(RETARGET_MODES), list(ORBIT_MODES))
    assert animate.POSE_MODES is POSE_MODES and "default 90: -45..+45" in " ".join(
        _sub(p, "render").format_help().split())

    def defaults(fn):
        return {k: q.default for k, q in inspect.signature(fn).parameters.items() if q.default is not q.empty}

    assert {k: defaults(animate.run_animate)[k] for k in asdict(d)} == asdict(d)
    assert {k: defaults(live.run_live)[k] for k in asdict(d) if k in defaults(live.run_live)} == {
        k: getattr(d, k) for k in ("duration", "max_frames", "pose", "retarget", "expression_gain", "scale")}
    assert {k: defaults(animate.render_orbit)[k] for k in asdict(o)} == asdict(o)
    assert {k: defaults(animate.render_view)[k] for k in asdict(v)} == asdict(v)


def test_help_explains_every_option():
    p = build_parser()
    for name in COMMANDS:
        for act in _sub(p, name)._actions:
            if act.option_strings and act.dest != "help":
                assert act.help and len(act.help) > 10, (name, act.option_strings)


def test_parser_builds_without_torch():
    code = "import sys, styletalker.cli as c; c.build_parser(); print(sorted(m for m in ('torch', 'mediapipe') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
