"""StyleTalker: monocular talking-head video -> editable, animatable 3D Gaussian head avatar."""

__version__ = "0.1.0"
