"""KITTI flow PNGs (devkit ``flow_read.m`` / ``flow_write.m``): 16-bit, three channels,
R = u·64 + 2^15, G = v·64 + 2^15, B = 1 where the flow is valid, 0 elsewhere.

The encoding covers ±512 px in steps of 1/64 px. OpenCV decodes and encodes in BGR order, so the
channels are reversed here.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from scattermotion.errors import InputError
from scattermotion.io.atomic import write_bytes_atomic
from scattermotion.io.checks import as_flow, read_image_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCALE = 64.0
OFFSET = 2.0**15


def read_kitti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG: (H×W×2 float32 flow with NaN where invalid, H×W bool valid mask)."""
    path = Path(path)
    data = read_image_bytes(path)  # the declared size is checked before decoding
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(path, "not a PNG file")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise InputError(path, "PNG cannot be decoded (corrupt or truncated)")
    if bgr.dtype != np.uint16:
        raise InputError(path, f"not a KITTI flow PNG: {bgr.dtype.itemsize * 8}-bit, expected 16-bit")
    channels = 1 if bgr.ndim == 2 else bgr.shape[2]
    if channels != 3:
        raise InputError(path, f"not a KITTI flow PNG: {channels} channel(s), expected 3")
    valid = bgr[:, :, 0] > 0
    flow = (bgr[:, :, [2, 1]].astype(np.float32) - OFFSET) / SCALE
    flow[~valid] = np.nan
    return flow, valid


def encode_kitti(flow: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The H×W×3 uint16 image (RGB order) that stores ``flow``; invalid pixels hold zero flow."""
    flow = as_flow(flow)
    finite = np.isfinite(flow).all(axis=2)
    if valid is None:
        valid = finite
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != flow.shape[:2]:
            raise ValueError(f"valid mask shape {valid.shape} does not match flow shape {flow.shape[:2]}")
        valid = valid & finite  # a NaN cannot be encoded, so it is never valid
    # float64: in float32, u·64 + 2^15 loses the 1/64 grid's rounding precision for |u| above ~30 px.
    encoded = np.where(valid[:, :, None], flow.astype(np.float64), 0.0) * SCALE + OFFSET
    rgb = np.empty(flow.shape[:2] + (3,), dtype=np.uint16)
    rgb[:, :, :2] = np.clip(np.rint(encoded), 0, 2**16 - 1).astype(np.uint16)
    rgb[:, :, 2] = valid
    return rgb


def write_kitti(path: str | os.PathLike, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write a KITTI flow PNG atomically. ``valid`` defaults to the pixels whose flow is finite; flow
    beyond ±512 px is clipped to the encodable range."""
    rgb = encode_kitti(flow, valid)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path} as PNG")
    write_bytes_atomic(path, png.tobytes())
