"""Pictures for the report: reconstruction-error heat maps, confidence maps, colour bars, labelled panels.

Every map of one kind uses one fixed scale, so the pictures of different methods compare at a glance.
"""

from __future__ import annotations

import cv2
import numpy as np

from scattermotion.metrics import backward_warp_image

ERROR_RANGE = 64.0  # grey levels (0..255 scale) drawn at the top of the error colour map
UNSCORED_GREY = 128  # pixels whose sample point leaves frame t+1: nothing to compare
ERROR_COLORMAP = cv2.COLORMAP_INFERNO
CONFIDENCE_COLORMAP = cv2.COLORMAP_VIRIDIS


def _apply_colormap(levels: np.ndarray, colormap: int) -> np.ndarray:
    """uint8 levels (H×W) through an OpenCV colour map, as RGB."""
    return cv2.cvtColor(cv2.applyColorMap(np.ascontiguousarray(levels), colormap), cv2.COLOR_BGR2RGB)


def reconstruction_error(
    frame1: np.ndarray, frame2: np.ndarray, flow: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``|frame_t − warp(frame_t+1, flow)|`` averaged over RGB (0..255 scale, H×W float32), and
    the H×W bool mask of pixels whose sample point lies inside frame t+1 (only those are scored)."""
    warped, valid = backward_warp_image(frame2, flow)
    reference = frame1.astype(np.float64).reshape(warped.shape)
    error = np.abs(warped - reference).mean(axis=2)
    return error.astype(np.float32), valid


def error_image(error: np.ndarray, valid: np.ndarray, error_range: float = ERROR_RANGE) -> np.ndarray:
    """RGB heat map of an error map: black (0) to yellow-white (≥ ``error_range``); unscored pixels grey."""
    levels = np.clip(error / error_range * 255.0, 0, 255).round().astype(np.uint8)
    image = _apply_colormap(levels, ERROR_COLORMAP)
    image[~valid] = UNSCORED_GREY
    return image


def confidence_image(confidence: np.ndarray) -> np.ndarray:
    """RGB picture of a confidence map in [0, 1] (dark purple = unsure, yellow = confident)."""
    levels = np.clip(np.nan_to_num(confidence) * 255.0, 0, 255).round().astype(np.uint8)
    return _apply_colormap(levels, CONFIDENCE_COLORMAP)


def colour_bar(colormap: int, width: int = 256, height: int = 14) -> np.ndarray:
    """A horizontal key of an OpenCV colour map, low values on the left."""
    ramp = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
    return _apply_colormap(ramp, colormap)


def label_panel(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` with ``text`` written in its top-left corner (white on a dark outline)."""
    out = np.ascontiguousarray(image.copy())
    scale = max(0.35, min(out.shape[:2]) / 300)
    thickness = max(1, round(scale * 2))
    origin = (4, 4 + round(12 * scale))
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
