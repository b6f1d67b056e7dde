"""Keep MediaPipe's start-up log lines (absl / TFLite, written by C++ straight to file
descriptor 2) off the user's terminal.

MediaPipe prints half a dozen INFO/WARNING lines when a graph starts ("GPU suport is not
available", "Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ...").
They are harmless but look like errors, and no environment variable silences them in
mediapipe 0.10.21. :func:`quiet_native_stderr` sends fd 2 to a temporary file for the duration
of a block, then writes back every line that is *not* one of these known messages, so real
errors still reach the user. ``STYLETALKER_NATIVE_LOG=1`` turns the filtering off.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Lines MediaPipe 0.10.21 prints on every start on a CPU-only machine.
NOISE = re.compile(
    rb"All log messages before absl::InitializeLog|GPU suport is not available|gl_context_egl"
    rb"|acceleration to xnnpack by default|Created TensorFlow Lite XNNPACK delegate"
    rb"|Feedback manager requires a model with a single signature"
)


def filter_noise(data: bytes) -> bytes:
    """``data`` without the known start-up lines (and without blank lines)."""
    return b"".join(l for l in data.splitlines(keepends=True) if l.strip() and not NOISE.search(l))


@contextlib.contextmanager
def quiet_native_stderr():
    """Capture fd 2 while the block runs; replay everything but MediaPipe's start-up noise."""
    if os.environ.get("STYLETALKER_NATIVE_LOG", "") not in ("", "0"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = filter_noise(tmp.read())
            if rest:
                os.write(2, rest)


class QuietFirstCall:
    """Wraps an object whose first ``method`` call starts a MediaPipe graph (and logs)."""

    def __init__(self, obj, method: str = "process"):
        self._obj, self._method, self._first = obj, method, True

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if name != self._method or not self._first:
            return attr

        def call(*a, **kw):
            with quiet_native_stderr():
                out = attr(*a, **kw)
            self._first = False
            return out

        return call
