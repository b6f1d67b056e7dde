"""StyleTalker: monocular talking-head video -> editable, animatable 3D Gaussian head avatar."""

import os as _os

# OpenMP worker threads that spin after every parallel torch op make 2-thread CPU runs 5-15x
# slower on small, busy machines (measured in docs/render.md). A passive wait costs nothing on
# an idle machine. Only a default: it takes effect if torch has not been imported yet, and a
# user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
