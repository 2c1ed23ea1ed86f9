"""Checks shared by the flow readers and writers: array shapes going out, readable files coming in."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from scattermotion.errors import InputError

# Largest file the image readers will load whole (a 16-bit 3-channel 8K frame is ~200 MB uncompressed;
# PNG/JPEG files are far smaller).
MAX_IMAGE_FILE_BYTES = 512 * 2**20
# Largest flow field the .flo/.npy readers accept (800 MB as float32): anything larger is a corrupt header.
MAX_FLOW_PIXELS = 10**8
# Largest image or video frame decoded, checked against the size its header declares before decoding:
# above 8K UHD (33 Mpx) and the largest camera photos, below what a small file can make the decoder
# allocate (a 840 KB PNG may declare 12000x12000, 430 MB decoded and several GB downstream).
MAX_IMAGE_PIXELS = 40_000_000


def as_flow(flow: np.ndarray) -> np.ndarray:
    """``flow`` as a C-contiguous H×W×2 float32 array; ``ValueError`` for anything else (a caller's bug)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] == 0 or flow.shape[1] == 0:
        raise ValueError(f"flow must be H×W×2 with H, W > 0, got shape {flow.shape}")
    if flow.dtype.kind not in "fiu":
        raise ValueError(f"flow must be a real numeric array, got dtype {flow.dtype}")
    return np.ascontiguousarray(flow, dtype=np.float32)


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as a C-contiguous H×W×3 uint8 RGB array, a grayscale H×W (or H×W×1) one expanded to three
    channels; ``InputError`` naming it (``name``, e.g. ``"frame 3"``) otherwise. The one frame check: the
    estimators, the classical baselines and the image/video writers all use it."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(
            None,
            f"{name} must be uint8 (0..255), got {image.dtype}; "
            "convert float images in [0, 1] with (x * 255).round().astype(np.uint8)",
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(None, f"{name}: expected H×W×3 RGB or H×W grayscale, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(None, f"{name}: empty, shape {image.shape}")
    return np.ascontiguousarray(image)


def check_same_size(frame: np.ndarray, first: np.ndarray, index: int) -> None:
    """``InputError`` unless frame ``index`` has the height and width of frame 0 (``first``)."""
    if frame.shape[:2] != first.shape[:2]:
        raise InputError(
            None,
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is "
            f"{first.shape[1]}x{first.shape[0]}: all frames of a clip must have the same size",
        )


def check_frame_count(count: int) -> None:
    """``InputError`` for fewer than the 2 frames one motion map needs."""
    if count < 2:
        raise InputError(None, f"motion needs at least 2 frames, got {count}")


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading; ``InputError`` unless it is a regular file. Opened non-blocking, so a
    FIFO or device is refused at once instead of blocking until something writes to it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise InputError(path, f"is {what}, not a regular file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def require_regular_file(path: str | os.PathLike) -> None:
    """``InputError`` unless ``path`` is a regular file (for readers that open it by name themselves)."""
    open_regular_file(path).close()


def check_pixels(path: str | os.PathLike, width: int, height: int, limit: int | None = None) -> None:
    """``InputError`` when a declared ``width×height`` is over the limit (default :data:`MAX_IMAGE_PIXELS`,
    read at call time so that it can be lowered)."""
    limit = MAX_IMAGE_PIXELS if limit is None else limit
    if width * height > limit:
        raise InputError(path, f"declares {width}x{height} pixels, more than the {limit} this reader decodes")


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, BMP, WebP, TIFF or PNM (PPM/PGM/PBM) file, or
    None when the bytes are none of these (or too short to tell). Reads only the header."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if data.startswith(b"BM"):
            if struct.unpack("<I", data[14:18])[0] == 12:  # BITMAPCOREHEADER
                return struct.unpack("<HH", data[18:22])
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # a negative height means rows stored top-down
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if data[:1] == b"P" and data[1:2] in b"123456" and data[1:2]:
            return _pnm_size(data)
    except (struct.error, ValueError, IndexError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for i in range(count):
        tag, kind, _n, value = struct.unpack(order + "HHI4s", data[ifd + 2 + 12 * i : ifd + 14 + 12 * i])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in data[2:512].splitlines():
        tokens.extend(line.split(b"#", 1)[0].split())
        if len(tokens) >= 2:
            return int(tokens[0]), int(tokens[1])
    return None


def read_file_bytes(path: str | os.PathLike, max_bytes: int = MAX_IMAGE_FILE_BYTES) -> bytes:
    """The whole file, or ``InputError`` naming it when it is missing, unreadable, not a regular file,
    empty or too large."""
    path = Path(path)
    try:
        with open_regular_file(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise InputError(path, f"file is {size} bytes, more than the {max_bytes} this reader accepts")
            data = f.read()
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    if not data:
        raise InputError(path, "file is empty")
    return data


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file whose header declares at most :data:`MAX_IMAGE_PIXELS`, checked before
    anything decodes it; ``InputError`` for a format not listed in :func:`image_size` or a larger image."""
    data = read_file_bytes(path)
    size = image_size(data)
    if size is None:
        raise InputError(path, "not a readable image (PNG, JPEG, BMP, WebP, TIFF or PPM/PGM)")
    check_pixels(path, *size)
    return data
