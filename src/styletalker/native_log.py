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
    rb"|Using NORM_RECT without IMAGE_DIMENSIONS is only supported for the square ROI"  # hands; crops are square
)


def filter_noise(data: bytes) -> bytes:
    """``data`` without the known start-up lines (and without blank lines)."""
    return b"".join(l for l in data.splitlines(keepends=True) if l.strip() and not NOISE.search(l))


def _flush_stderr() -> None:
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _saved_stderr() -> int | None:
    """A duplicate of fd 2 (after flushing Python's stderr) to restore it from; None when nothing
    is to be filtered (``STYLETALKER_NATIVE_LOG=1``) or there is no fd 2 (embedded interpreters)."""
    if os.environ.get("STYLETALKER_NATIVE_LOG", "") not in ("", "0"):
        return None
    try:
        sys.stderr.flush()
        return os.dup(2)
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def quiet_native_stderr():
    """Capture fd 2 while the block runs; replay everything but MediaPipe's start-up noise."""
    saved = _saved_stderr()
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = filter_noise(tmp.read())
            if rest:
                os.write(2, rest)


@contextlib.contextmanager
def filtered_stderr():
    """For a whole command: fd 2 goes through a pipe whose reader thread forwards everything to the
    real stderr as it arrives (progress bars included) except MediaPipe's known start-up lines.

    Needed because some of those lines are written by MediaPipe's own threads at a moment no call
    of ours brackets (the "Feedback manager ..." warning comes when the landmark model first runs,
    asynchronously), so :func:`quiet_native_stderr` around a call cannot catch them."""
    import threading

    saved = _saved_stderr()
    if saved is None:
        yield
        return
    try:
        r, w = os.pipe()
    except OSError:
        os.close(saved)
        yield
        return

    def forward():
        rest = b""
        while True:
            try:
                chunk = os.read(r, 65536)
            except OSError:
                break
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            lines, rest = data[:cut], data[cut:]
            out = b"".join(l for l in lines.splitlines(keepends=True) if not NOISE.search(l))
            if rest and not rest.startswith((b"W0000", b"I0000", b"E0000", b"INFO:", b"WARNING: All log")):
                out, rest = out + rest, b""  # a progress bar (no newline): show it now
            if out:
                try:
                    os.write(saved, out)
                except OSError:
                    pass
        if rest and not NOISE.search(rest):
            try:
                os.write(saved, rest)
            except OSError:
                pass
        os.close(r)

    reader = threading.Thread(target=forward, name="styletalker-stderr", daemon=True)
    os.dup2(w, 2)
    os.close(w)
    reader.start()
    try:
        yield
    finally:
        _flush_stderr()
        os.dup2(saved, 2)  # the pipe's last write end of this process closes: the reader sees EOF
        reader.join(timeout=2.0)  # (child processes still holding it would keep it open)
        if not reader.is_alive():  # else leave its fd open: a reused number must not receive its writes
            os.close(saved)


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
