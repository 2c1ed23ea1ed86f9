"""Checks shared by the flow readers and writers: array shapes going out, readable files coming in."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scattermotion.errors import InputError

# Largest file the image readers will load whole (a 16-bit 3-channel 8K frame is ~200 MB uncompressed;
# PNG/JPEG files are far smaller).
MAX_IMAGE_FILE_BYTES = 512 * 2**20


def as_flow(flow: np.ndarray) -> np.ndarray:
    """``flow`` as a C-contiguous H×W×2 float32 array; ``ValueError`` for anything else (a caller's bug)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] == 0 or flow.shape[1] == 0:
        raise ValueError(f"flow must be H×W×2 with H, W > 0, got shape {flow.shape}")
    if flow.dtype.kind not in "fiu":
        raise ValueError(f"flow must be a real numeric array, got dtype {flow.dtype}")
    return np.ascontiguousarray(flow, dtype=np.float32)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as H×W×3 uint8 RGB; a grayscale H×W (or H×W×1) image is expanded to three channels."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must be H×W×3 (or H×W) with H, W > 0, got shape {image.shape}")
    return image


def read_file_bytes(path: str | os.PathLike, max_bytes: int = MAX_IMAGE_FILE_BYTES) -> bytes:
    """The whole file, or ``InputError`` naming it when it is missing, unreadable, empty or too large."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise InputError(path, f"file is {size} bytes, more than the {max_bytes} this reader accepts")
            data = f.read()
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    if not data:
        raise InputError(path, "file is empty")
    return data
