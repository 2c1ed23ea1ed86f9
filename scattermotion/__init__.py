"""scattermotion: self-supervised dense motion from unlabeled video.

from scattermotion import MotionEstimator
est = MotionEstimator.from_pretrained()
flow = est.estimate(frame1, frame2)  # H x W x 2 float32, (u, v) in pixels
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["MotionEstimator", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `import scattermotion` (and the CLI's --help) stays fast: torch loads on use.
    if name == "MotionEstimator":
        from scattermotion.estimator import MotionEstimator

        return MotionEstimator
    raise AttributeError(f"module 'scattermotion' has no attribute {name!r}")
