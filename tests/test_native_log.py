"""MediaPipe's start-up log lines are kept off stderr; everything else still gets through."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from styletalker.native_log import filter_noise, quiet_native_stderr

NOISE_LINE = (b"I0000 00:00:1795653059.488604   26068 task_runner.cc:85] GPU suport is not available: "
              b"INTERNAL: ; RET_CHECK failure\n")


def test_filter_keeps_real_messages(capfd):
    with quiet_native_stderr():
        os.write(2, NOISE_LINE)
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 real native error: model file is corrupt\n")
        print("python stderr line", file=sys.stderr)
    err = capfd.readouterr().err
    assert "GPU suport" not in err and "XNNPACK" not in err
    assert "real native error: model file is corrupt" in err
    assert "python stderr line" in err
    assert filter_noise(NOISE_LINE + b"\n  \nkeep me\n") == b"keep me\n"


def test_filter_replays_on_exception(capfd):
    try:
        with quiet_native_stderr():
            os.write(2, b"F0000 check failed before the crash\n")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "check failed before the crash" in capfd.readouterr().err
    os.write(2, b"after\n")  # fd 2 is restored
    assert capfd.readouterr().err == "after\n"


SCRIPT = """
import numpy as np
from styletalker.preprocess import mp_models
lm = mp_models.create_landmarker()
seg = mp_models.create_segmenter()
seg.process(np.zeros((64, 64, 3), np.uint8))
seg.close(); lm.close()
print("done")
"""


def test_mediapipe_startup_is_quiet():
    def run(**env):
        return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})

    def native_lines(err):  # absl log lines (I/W/E + MMDD) and TFLite's "INFO:" lines
        return [l for l in err.splitlines() if re.match(r"[IWE]\d{4} |INFO: |WARNING: All log", l)]

    loud = run(STYLETALKER_NATIVE_LOG="1")
    assert loud.returncode == 0 and "done" in loud.stdout, loud.stderr
    # mediapipe really does print them (else this test proves nothing)
    assert "XNNPACK" in loud.stderr and len(native_lines(loud.stderr)) >= 4, loud.stderr
    quiet = run(STYLETALKER_NATIVE_LOG="0")
    assert quiet.returncode == 0 and "done" in quiet.stdout, quiet.stderr
    assert native_lines(quiet.stderr) == [], quiet.stderr


def test_cli_quiet_preprocess_prints_no_mediapipe_lines(franck_video, tmp_path):
    """MediaPipe's threads print some lines at moments no call of ours brackets ("Feedback
    manager ..." when the landmark model first runs): the CLI filters its whole stderr."""

    def run(work, *flags, **env):
        cmd = [sys.executable, "-m", "styletalker", *flags, "preprocess", str(franck_video), str(tmp_path / work),
               "--start", "10", "--duration", "3", "--fps", "5", "--size", "64"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})

    loud = run("loud", STYLETALKER_NATIVE_LOG="1")
    assert loud.returncode == 0 and "Feedback manager requires" in loud.stderr  # mediapipe does print it
    quiet = run("quiet", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("preprocess: kept 15/15 frames")
    normal = run("normal")
    assert normal.returncode == 0 and "Feedback manager" not in normal.stderr and "W0000" not in normal.stderr
    assert "track faces" in normal.stderr  # the progress bars still reach the terminal
