"""Flow as NumPy ``.npy`` (H×W×2 float). Loading never unpickles, and the header is checked (shape,
dtype, size against the file length) before the data are read."""

from __future__ import annotations

import math
import os
import tokenize
from pathlib import Path

import numpy as np

from scattermotion.errors import InputError
from scattermotion.io.atomic import atomic_output
from scattermotion.io.checks import MAX_FLOW_PIXELS, as_flow, open_regular_file

MAX_PIXELS = MAX_FLOW_PIXELS
# Version 3.0 only allows UTF-8 field names, which float arrays never have, so the 2.0 reader fits it.
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,
}


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Read an H×W×2 floating-point ``.npy`` file as float32."""
    path = Path(path)
    with open_regular_file(path) as f:
        try:
            file_bytes = os.fstat(f.fileno()).st_size
            if file_bytes == 0:
                raise InputError(path, "file is empty")
            shape, dtype = _read_header(path, f)
            data_bytes = math.prod(shape) * dtype.itemsize
            if file_bytes - f.tell() < data_bytes:
                raise InputError(path, f"truncated: header says {shape} {dtype}, data are shorter")
            f.seek(0)
            flow = np.lib.format.read_array(f, allow_pickle=False)
        except OSError as err:
            raise InputError(path, f"cannot read: {err.strerror or err}") from err
        except ValueError as err:  # numpy's own complaints about a malformed body
            raise InputError(path, f"bad .npy file: {err}") from err
    return np.ascontiguousarray(flow, dtype=np.float32)


def _read_header(path: Path, f) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        if version not in HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _fortran_order, dtype = HEADER_READERS[version](f)
    # numpy tokenizes the header: an unclosed brace raises TokenError, a garbled one SyntaxError.
    except (ValueError, SyntaxError, tokenize.TokenError) as err:
        raise InputError(path, f"not a .npy file: {err}") from err
    if dtype.kind != "f" or dtype.hasobject:
        raise InputError(path, f"flow must be floating point, file holds {dtype}")
    if len(shape) != 3 or shape[2] != 2 or shape[0] <= 0 or shape[1] <= 0:
        raise InputError(path, f"flow must be H×W×2, file holds shape {shape}")
    if shape[0] * shape[1] > MAX_PIXELS:
        raise InputError(path, f"flow of {shape[0]}×{shape[1]} is more than {MAX_PIXELS} pixels")
    return shape, dtype


def write_npy(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write H×W×2 flow as float32 ``.npy`` (atomically; NaN kept)."""
    flow = as_flow(flow)
    with atomic_output(path) as temp, open(temp, "wb") as f:
        np.save(f, flow, allow_pickle=False)
