"""Flow colour coding with the Middlebury colour wheel (Baker et al., "A Database and Evaluation
Methodology for Optical Flow", IJCV 2011; their ``colorcode.cpp``), plus small image helpers.

Hue gives the direction (u > 0 red, v > 0 yellow, u < 0 cyan, v < 0 blue-violet; image y points down),
saturation the magnitude relative to a normalising radius: zero motion is white. Motion beyond the radius
is drawn at 75 % brightness, as in the reference code, so saturated areas stay visible. Unknown (NaN) motion
is black.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from scattermotion.io.atomic import write_bytes_atomic
from scattermotion.io.checks import as_flow, as_rgb

# The 55-colour wheel as six segments: (name, length, starting RGB colour, changing channel, rising?).
# Red -> yellow (G rises), yellow -> green (R falls), green -> cyan (B rises), cyan -> blue (G falls),
# blue -> magenta (R rises), magenta -> red (B falls).
WHEEL_SEGMENTS = (
    ("RY", 15, (255, 0, 0), 1, True),
    ("YG", 6, (255, 255, 0), 0, False),
    ("GC", 4, (0, 255, 0), 2, True),
    ("CB", 11, (0, 255, 255), 1, False),
    ("BM", 13, (0, 0, 255), 0, True),
    ("MR", 6, (255, 0, 255), 2, False),
)
SEQUENCE_PERCENTILE = 99.0
SAMPLES_PER_FLOW = 1 << 16  # enough for a stable percentile; bounds the memory of long sequences
EPS = 1e-9


def make_color_wheel() -> np.ndarray:
    """The 55×3 wheel (RGB, 0..255 as float), with the reference code's integer steps ``255*i/n``."""
    segments = []
    for _name, n, start, channel, rising in WHEEL_SEGMENTS:
        segment = np.tile(np.array(start, dtype=np.float64), (n, 1))
        ramp = np.floor(255.0 * np.arange(n) / n)
        segment[:, channel] = ramp if rising else 255.0 - ramp
        segments.append(segment)
    return np.concatenate(segments)


COLOR_WHEEL = make_color_wheel()


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Colour-code H×W×2 flow as H×W×3 uint8 RGB.

    ``max_flow`` is the magnitude drawn fully saturated; by default the largest finite magnitude in this
    flow (pass :func:`sequence_max_flow` to keep colours comparable across a sequence). NaN is black.
    """
    flow = as_flow(flow)
    unknown = ~np.isfinite(flow).all(axis=2)
    u = np.where(unknown, 0.0, flow[:, :, 0]).astype(np.float64)
    v = np.where(unknown, 0.0, flow[:, :, 1]).astype(np.float64)
    radius = np.hypot(u, v)
    if max_flow is None:
        max_flow = float(radius.max())
    scale = max(float(max_flow), EPS)
    return _colorize(u / scale, v / scale, unknown)


def _colorize(u: np.ndarray, v: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Colours for flow already divided by the normalising radius (the reference ``computeColor``)."""
    n_colors = len(COLOR_WHEEL)
    radius = np.hypot(u, v)
    angle = np.arctan2(-v, -u) / np.pi  # -1..1; u > 0 gives 1, the last (red) end of the wheel
    position = (angle + 1.0) / 2.0 * (n_colors - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n_colors
    frac = (position - k0)[..., None]
    color = ((1.0 - frac) * COLOR_WHEEL[k0] + frac * COLOR_WHEEL[k1]) / 255.0
    inside = (radius <= 1.0)[..., None]
    color = np.where(inside, 1.0 - radius[..., None] * (1.0 - color), color * 0.75)
    color[unknown] = 0.0
    return np.floor(255.0 * color).astype(np.uint8)


def sequence_max_flow(flows: Iterable[np.ndarray], percentile: float = SEQUENCE_PERCENTILE) -> float:
    """One normalising radius for a whole sequence: the ``percentile`` (default 99th) of the finite
    magnitudes of all its flows.

    A percentile rather than the maximum, so that a few wild pixels do not wash the rest out to white;
    the top 1 % is then drawn as saturated (darkened) colour. Each flow contributes at most
    ``SAMPLES_PER_FLOW`` evenly strided pixels. Returns 0.0 when nothing is finite.
    """
    samples = []
    for flow in flows:
        flow = as_flow(flow).reshape(-1, 2)
        stride = max(1, len(flow) // SAMPLES_PER_FLOW)
        magnitude = np.hypot(flow[::stride, 0], flow[::stride, 1])
        samples.append(magnitude[np.isfinite(magnitude)])
    magnitudes = np.concatenate(samples) if samples else np.empty(0)
    if magnitudes.size == 0:
        return 0.0
    return float(np.percentile(magnitudes, percentile))


def color_wheel_legend(size: int = 128) -> np.ndarray:
    """A size×size RGB key: the colour of every flow direction and magnitude up to the normalising radius
    (the disc's edge); white outside the disc."""
    centre = (size - 1) / 2.0
    coords = (np.arange(size) - centre) / max(centre, EPS)
    v, u = np.meshgrid(coords, coords, indexing="ij")
    legend = _colorize(u, v, np.zeros((size, size), dtype=bool))
    legend[np.hypot(u, v) > 1.0] = 255
    return legend


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an H×W×3 uint8 RGB (or H×W grayscale) image as PNG, atomically."""
    _write_image(path, rgb, ".png", [])


def write_jpeg(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an H×W×3 uint8 RGB (or H×W grayscale) image as JPEG, atomically."""
    _write_image(path, rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


def _write_image(path: str | os.PathLike, rgb: np.ndarray, suffix: str, params: list[int]) -> None:
    rgb = as_rgb(rgb)
    ok, data = cv2.imencode(suffix, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path} as {suffix[1:].upper()}")
    write_bytes_atomic(path, data.tobytes())


def make_strip(
    images: Sequence[np.ndarray], gap: int = 4, gap_value: int = 255, columns: int | None = None
) -> np.ndarray:
    """Tile RGB (or grayscale) uint8 images left to right with ``gap`` pixels of ``gap_value`` between them,
    e.g. ``make_strip([frame, flow_to_color(flow)])``.

    With ``columns``, the images fill rows of that many (row-major) and the rows are stacked with the same
    gap, e.g. frames on the first row and their motion on the second. Smaller images are top-left aligned
    and padded with ``gap_value``.
    """
    if len(images) == 0:
        raise ValueError("make_strip needs at least one image")
    if gap < 0:
        raise ValueError(f"gap must be non-negative, got {gap}")
    tiles = [as_rgb(image) for image in images]
    per_row = len(tiles) if columns is None else columns
    if per_row <= 0:
        raise ValueError(f"columns must be positive, got {columns}")
    rows = [_tile_row(tiles[i : i + per_row], gap, gap_value) for i in range(0, len(tiles), per_row)]
    return _tile_row([row.transpose(1, 0, 2) for row in rows], gap, gap_value).transpose(1, 0, 2)


def _tile_row(tiles: list[np.ndarray], gap: int, gap_value: int) -> np.ndarray:
    height = max(tile.shape[0] for tile in tiles)
    width = sum(tile.shape[1] for tile in tiles) + gap * (len(tiles) - 1)
    row = np.full((height, width, 3), gap_value, dtype=np.uint8)
    x = 0
    for tile in tiles:
        row[: tile.shape[0], x : x + tile.shape[1]] = tile
        x += tile.shape[1] + gap
    return row
