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
