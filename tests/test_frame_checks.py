"""One frame check (``io.checks.as_rgb``) behind MotionEstimator, the classical baselines and the writers:
the same bad frame gives the same InputError, whichever of them is handed it."""

from __future__ import annotations

import numpy as np
import pytest

from scattermotion.baselines import ClassicalFlow
from scattermotion.errors import InputError
from scattermotion.estimator import get_estimator
from scattermotion.io import write_png

GOOD = np.zeros((16, 24, 3), np.uint8)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((16, 24, 3), np.float32), r"frame 1 must be uint8 \(0\.\.255\), got float32"),
        (np.zeros((16, 24, 4), np.uint8), r"frame 1: expected H×W×3 RGB or H×W grayscale"),
        (np.zeros((0, 24, 3), np.uint8), "frame 1: empty"),
        (np.zeros((16, 32, 3), np.uint8), "frame 1 is 32x16, frame 0 is 24x16: all frames of a clip"),
    ],
)
def test_every_method_rejects_a_bad_frame_with_the_same_error(bad, message):
    for estimate in (ClassicalFlow("zero").estimate, get_estimator("dis").estimate):
        with pytest.raises(InputError, match=message):
            estimate(GOOD, bad)
    for clip in (ClassicalFlow("zero").estimate_clip, get_estimator("dis").estimate_clip):
        with pytest.raises(InputError, match=message):
            clip([GOOD, bad])
        with pytest.raises(InputError, match="motion needs at least 2 frames, got 1"):
            clip([GOOD])


def test_writers_use_the_same_check(tmp_path):
    with pytest.raises(InputError, match="image must be uint8"):
        write_png(tmp_path / "float.png", GOOD.astype(np.float32))
    write_png(tmp_path / "grey.png", GOOD[:, :, 0])  # grey is expanded, not refused
    assert (tmp_path / "grey.png").stat().st_size > 0
