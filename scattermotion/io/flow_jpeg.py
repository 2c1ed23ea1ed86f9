"""Flow as the two 8-bit grayscale JPEGs per frame pair that TSN-style action recognition reads
(the layout written by denseflow / ``dense_flow``): ``flow_x_%05d.jpg`` and ``flow_y_%05d.jpg``.

Each component is clipped to [-bound, bound] and mapped linearly to 0..255, rounded, as denseflow's
``convertFlowToImage`` does, so 0 px becomes 128 (and unknown NaN flow is written as 128 too).
Indices are 1-based, as the TSN and mmaction2 loaders expect by default (``start_index=1``) and as the
original dense_flow and mmaction2's ``flow_extraction.py`` write them: the flow from frame k to k+1 (k
counted from 1) is ``flow_x_%05d.jpg % k``. (open-mmlab's denseflow has counted from 0 since 2019,
``flow_x_00000.jpg``; mmaction2 then needs ``start_index=0``.)

Reading, :func:`find_flow_images` accepts both naming styles (``flow_x_``/``flow_y_`` of denseflow and
``x_``/``y_`` of mmaction2's ``flow_extraction.py``) and both numberings (from 0 or from 1).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
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
# (x, y) prefixes of the flow image naming styles: denseflow and ours, then mmaction2's flow_extraction.py.
FLOW_IMAGE_PREFIXES = (("flow_x_", "flow_y_"), ("x_", "y_"))
_FLOW_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # denseflow writes PNG with --saveType png


def check_bound(bound: float, flag: str = "bound") -> float:
    """``bound`` as a float, or InputError (one line naming ``flag``) unless it is a positive finite number:
    an infinite bound would map every motion to grey level 128."""
    value = float(bound)
    if not (math.isfinite(value) and value > 0):
        raise InputError(None, f"{flag} must be a positive finite number of pixels, got {bound}")
    return value


def flow_to_uint8(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """Map u and v from [-bound, bound] to 0..255 (clipped; NaN -> 128). Returns (x_u8, y_u8), H×W each."""
    bound = check_bound(bound)
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
        raise ValueError(f"index must be non-negative, got {index}")
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


@dataclass(frozen=True)
class FlowImageSeries:
    """The flow image pairs of one folder: map ``i`` (0-based) is ``paths(i)``, for ``i < count``."""

    folder: Path
    x_files: tuple[Path, ...]
    y_files: tuple[Path, ...]
    first_index: int  # the number in the first file's name: 0 (denseflow since 2019) or 1

    @property
    def count(self) -> int:
        return len(self.x_files)

    def paths(self, i: int) -> tuple[Path, Path]:
        return self.x_files[i], self.y_files[i]


def find_flow_images(folder: str | os.PathLike) -> FlowImageSeries:
    """The consecutive ``flow_x_N``/``flow_y_N`` (or ``x_N``/``y_N``) images of ``folder`` from the lowest
    N (0 or 1); ``InputError`` when the folder holds none."""
    folder = Path(folder)
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except OSError as err:
        raise InputError(folder, f"cannot list folder: {err.strerror or err}") from err
    for x_prefix, y_prefix in FLOW_IMAGE_PREFIXES:
        xs, ys = _numbered(names, x_prefix), _numbered(names, y_prefix)
        if not xs:
            continue
        first = min(xs)
        x_files, y_files = [], []
        while first + len(x_files) in xs and first + len(x_files) in ys:
            index = first + len(x_files)
            x_files.append(folder / xs[index])
            y_files.append(folder / ys[index])
        if not x_files:
            raise InputError(folder, f"{xs[first]} has no {y_prefix} partner")
        return FlowImageSeries(folder, tuple(x_files), tuple(y_files), first)
    raise InputError(
        folder, "no flow_x_*.jpg / x_*.jpg images here (expected denseflow or mmaction2 flow images)"
    )


def _numbered(names: list[str], prefix: str) -> dict[int, str]:
    """``{N: name}`` for the names ``<prefix>N.<jpg|jpeg|png>``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    found = {}
    for name in names:
        stem, suffix = os.path.splitext(name)
        match = pattern.match(stem)
        if match and suffix.lower() in _FLOW_IMAGE_SUFFIXES:
            found.setdefault(int(match.group(1)), name)
    return found
