"""Flow as the two 8-bit grayscale JPEGs per frame pair that TSN-style action recognition reads
(the layout written by denseflow / ``dense_flow``): ``flow_x_%05d.jpg`` and ``flow_y_%05d.jpg``.

Each component is clipped to [-bound, bound] and mapped linearly to 0..255, rounded, as denseflow's
``convertFlowToImage`` does, so 0 px becomes 128 (and unknown NaN flow is written as 128 too).
Indices are 1-based like denseflow's ``writeImages`` (``i + 1``) and the TSN / MMAction loaders
(``start_index=1``): the flow from frame k to k+1 (k counted from 1) is ``flow_x_%05d.jpg % k``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from scattermotion.errors import InputError
from scattermotion.io.atomic import write_bytes_atomic
from scattermotion.io.checks import as_flow, read_file_bytes

DEFAULT_BOUND = 20.0
FIRST_INDEX = 1
X_NAME = "flow_x_{:05d}.jpg"
Y_NAME = "flow_y_{:05d}.jpg"


def flow_to_uint8(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """Map u and v from [-bound, bound] to 0..255 (clipped; NaN -> 128). Returns (x_u8, y_u8), H×W each."""
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    flow = as_flow(flow)
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    scaled = np.where(np.isnan(scaled), 128.0, np.rint(scaled))
    quantised = scaled.astype(np.uint8)
    return np.ascontiguousarray(quantised[:, :, 0]), np.ascontiguousarray(quantised[:, :, 1])


def uint8_to_flow(x_u8: np.ndarray, y_u8: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """The inverse of :func:`flow_to_uint8` up to quantisation (2·bound/255 px per level): H×W×2 float32."""
    levels = np.stack([x_u8, y_u8], axis=2).astype(np.float32)
    return levels * np.float32(2.0 * bound / 255.0) - np.float32(bound)


def flow_jpeg_paths(out_dir: str | os.PathLike, index: int) -> tuple[Path, Path]:
    """The (x, y) file paths for frame pair ``index`` (1-based) in ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir / X_NAME.format(index), out_dir / Y_NAME.format(index)


def write_flow_jpeg(
    out_dir: str | os.PathLike,
    index: int,
    flow: np.ndarray,
    bound: float = DEFAULT_BOUND,
    quality: int = 95,
) -> tuple[Path, Path]:
    """Write ``flow_x_{index:05d}.jpg`` and ``flow_y_{index:05d}.jpg`` into ``out_dir`` (created if needed),
    each atomically. Returns their paths."""
    if index < 0:
        raise ValueError(f"index must be non-negative (denseflow counts from {FIRST_INDEX}), got {index}")
    if not 0 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 0..100, got {quality}")
    x_u8, y_u8 = flow_to_uint8(flow, bound)
    x_path, y_path = flow_jpeg_paths(out_dir, index)
    x_path.parent.mkdir(parents=True, exist_ok=True)
    for image, path in ((x_u8, x_path), (y_u8, y_path)):
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {path} as JPEG")
        write_bytes_atomic(path, jpeg.tobytes())
    return x_path, y_path


def read_flow_component(path: str | os.PathLike) -> np.ndarray:
    """One 8-bit flow image as H×W uint8 (a colour file is reduced to grayscale, as loaders do)."""
    path = Path(path)
    image = cv2.imdecode(np.frombuffer(read_file_bytes(path), dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InputError(path, "not a readable image")
    return image


def read_flow_jpeg(
    x_path: str | os.PathLike, y_path: str | os.PathLike, bound: float = DEFAULT_BOUND
) -> np.ndarray:
    """Read a flow_x / flow_y pair back as H×W×2 float32 (approximate: clipped at ±bound, quantised,
    JPEG-compressed)."""
    x_u8, y_u8 = read_flow_component(x_path), read_flow_component(y_path)
    if x_u8.shape != y_u8.shape:
        x_name = Path(x_path).name
        raise InputError(y_path, f"size {y_u8.shape[::-1]} differs from {x_name} {x_u8.shape[::-1]}")
    return uint8_to_flow(x_u8, y_u8, bound)
