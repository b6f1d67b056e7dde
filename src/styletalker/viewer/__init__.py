"""The interactive viewer (``styletalker view WORK``, docs/viewer.md): the avatar in a browser through
viser, rendered on the server by the project's rasterizer, with expression and head-pose controls,
original / edit A/B, playback of the training clip, live driving (:mod:`styletalker.live`) and
PNG / .ply export.

    from styletalker.viewer import Viewer
    v = Viewer("work", port=0)      # loads the avatar; errors before any server starts
    url = v.start()                  # non-blocking; v.stop() closes it
"""

from .app import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_RESOLUTION, ORIGINAL, Viewer, run_viewer

__all__ = ["Viewer", "run_viewer", "ORIGINAL", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_RESOLUTION"]
