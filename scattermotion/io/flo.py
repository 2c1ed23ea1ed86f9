"""Middlebury ``.flo`` files: ``b"PIEH"`` (the float 202021.25), int32 width, int32 height, then float32
``u, v`` interleaved, row-major, all little-endian.

Malformed files are rejected with :class:`~scattermotion.errors.InputError` before any large allocation:
the header's size is checked against the file length first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scattermotion.errors import InputError
from scattermotion.io.atomic import atomic_output
from scattermotion.io.checks import MAX_FLOW_PIXELS, as_flow, open_regular_file

MAGIC = b"PIEH"  # the bytes of float32 202021.25, little-endian
HEADER_BYTES = 12
MAX_PIXELS = MAX_FLOW_PIXELS  # 800 MB of flow; anything larger is a corrupt header, not a real image
# Middlebury ground truth marks unknown flow with 1e10; its tools treat |value| > 1e9 as unknown.
UNKNOWN_FLOW = 1e10
UNKNOWN_FLOW_THRESHOLD = 1e9


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.flo`` file as H×W×2 float32; a pixel with a Middlebury "unknown" value (|x| > 1e9, or
    NaN) in either component becomes NaN in both."""
    path = Path(path)
    with open_regular_file(path) as f:
        try:
            file_bytes = os.fstat(f.fileno()).st_size
            header = f.read(HEADER_BYTES)
            width, height = _check_header(path, header, file_bytes)
            flow = np.fromfile(f, dtype="<f4", count=width * height * 2)
        except OSError as err:
            raise InputError(path, f"cannot read: {err.strerror or err}") from err
    if flow.size != width * height * 2:  # the file shrank between the size check and the read
        raise InputError(path, f"truncated: expected {width * height * 2} floats, got {flow.size}")
    flow = flow.astype(np.float32).reshape(height, width, 2)
    with np.errstate(invalid="ignore"):
        unknown = ~(np.abs(flow) <= UNKNOWN_FLOW_THRESHOLD).all(axis=2)
    flow[unknown] = np.nan
    return flow


def _check_header(path: Path, header: bytes, file_bytes: int) -> tuple[int, int]:
    if len(header) < HEADER_BYTES:
        what = "empty" if file_bytes == 0 else f"only {file_bytes} bytes"
        raise InputError(path, f"not a .flo file: {what}, shorter than the {HEADER_BYTES}-byte header")
    if header[:4] != MAGIC:
        raise InputError(path, f"not a .flo file: magic is {header[:4]!r}, expected {MAGIC!r}")
    width, height = (int(x) for x in np.frombuffer(header, dtype="<i4", count=2, offset=4))
    if width <= 0 or height <= 0:
        raise InputError(path, f"bad .flo header: width {width}, height {height} must be positive")
    if width * height > MAX_PIXELS:
        raise InputError(path, f"bad .flo header: {width}×{height} is more than {MAX_PIXELS} pixels")
    expected = HEADER_BYTES + width * height * 8
    if file_bytes != expected:
        problem = "truncated" if file_bytes < expected else "bad .flo file"
        raise InputError(
            path, f"{problem}: header says {width}×{height} ({expected} bytes), file has {file_bytes}"
        )
    return width, height


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write H×W×2 flow as ``.flo`` (atomically). A pixel with a NaN or infinite component is written as
    Middlebury's unknown marker (1e10 in both), which its tools, flow_vis and RAFT's readers expect; a NaN
    in the file breaks them. :func:`read_flo` reads it back as NaN."""
    flow = as_flow(flow)
    unknown = ~np.isfinite(flow).all(axis=2)
    if unknown.any():
        flow = flow.copy()
        flow[unknown] = UNKNOWN_FLOW
    height, width = flow.shape[:2]
    with atomic_output(path) as temp, open(temp, "wb") as f:
        f.write(MAGIC)
        f.write(np.array([width, height], dtype="<i4").tobytes())
        f.write(flow.astype("<f4", copy=False).tobytes())
