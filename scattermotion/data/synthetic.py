"""Synthetic clips with exact ground-truth motion, rendered from real image textures.

Every clip is a stack of layers drawn bottom to top. A layer owns a canonical plane (its texture lives
there) and, for every frame t, a map from canonical points to pixels. A pixel is rendered by pulling its
point back into the canonical plane of each layer and sampling the texture there, so the motion of a pixel
from frame t to t+1 is known analytically: ``flow_t(p) = layer.from_canonical(layer.to_canonical(p, t), t+1)
- p`` for the top layer at p.

Two kinds of scene:

- ``"smooth"``: one background plane moved by a camera homography plus a smooth non-rigid field
  (a sum of travelling sine waves, kept contractive so it is invertible; it is inverted numerically to
  ~1e-10 px).
- ``"sprites"``: a background plane under camera motion plus FlyingChairs-like sprites (star polygons and
  ellipses cut from other images), each with its own affine motion, z-ordered so that they occlude.
  Sprite edges are anti-aliased (2×2 supersampled coverage); the ground truth belongs to the top layer at
  the pixel centre.
- ``"footage"``: what real video looks like (issue: our maps were blotchy on plain camera pans with sensor
  noise, and lost small objects). A camera homography (translation, rotation, zoom, perspective; sometimes
  non-rigid) under 0-8 independent objects from a few pixels to half the frame, each on its own motion
  (small fast ones included), textures from training-side video frames as well as the sample pictures, and
  per-clip nuisances of real footage (:mod:`scattermotion.data.nuisance`: sensor noise, exposure change
  between frames, motion blur, JPEG artefacts, grey frames), which leave the ground truth exact.

Textures are OpenCV and scikit-image sample pictures from the fetched data, never the evaluation images
(aloe, graf, motorcycle) nor the reconstruction-evaluation frame pairs. Every clip is a deterministic function
of ``(seed, index)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from scattermotion.data.fetched import EVALUATION_ONLY, ensure_data, real_video
from scattermotion.data.nuisance import NuisanceConfig, apply_nuisances

# Colour pictures with plenty of texture; relative to the fetched data folder.
DEFAULT_TEXTURES = (
    "opencv/baboon.jpg", "opencv/fruits.jpg", "opencv/building.jpg", "opencv/home.jpg",
    "opencv/messi5.jpg", "opencv/board.jpg", "opencv/starry_night.jpg", "opencv/orange.jpg",
    "opencv/apple.jpg", "opencv/butterfly.jpg", "opencv/HappyFish.jpg", "opencv/stuff.jpg",
    "opencv/blox.jpg", "opencv/smarties.png", "opencv/squirrel_cls.jpg", "opencv/leuvenA.jpg",
    "opencv/aero1.jpg", "opencv/Blender_Suzanne1.jpg", "opencv/left.jpg", "opencv/pic3.png",
    "py/skimage/data/astronaut.png", "py/skimage/data/chelsea.png", "py/skimage/data/coffee.png",
    "py/skimage/data/rocket.jpg", "py/skimage/data/ihc.png", "py/skimage/data/camera.png",
    "py/skimage/data/brick.png", "py/skimage/data/gravel.png", "py/skimage/data/grass.png",
)  # fmt: skip
KINDS = ("mixed", "smooth", "sprites", "footage")
TEXTURE_BLUR_SIGMA = 0.6  # keeps bilinear resampling of the texture alias-free down to zoom ~0.7
LIPSCHITZ_BUDGET = 0.4  # of the non-rigid field: < 1 makes q + D(q) invertible; 0.4 converges fast
FAST_INVERSE_TOLERANCE = 1e-7  # px: the training renderer's non-rigid inverse (WarpedPlane.to_canonical)
FOOTAGE_MAX_OBJECTS = 8
FOOTAGE_MIN_OBJECT_PX = 3.0  # radius-like size of the smallest objects of "footage" clips
SUPERSAMPLE_OFFSETS = np.array([[-0.25, -0.25], [0.25, -0.25], [-0.25, 0.25], [0.25, 0.25]])


class SyntheticClip(NamedTuple):
    frames: np.ndarray  # T×H×W×3 uint8 RGB
    flows: np.ndarray  # (T-1)×H×W×2 float32, frame t -> t+1
    occluded: np.ndarray  # (T-1)×H×W bool: leaves the image or is covered by a higher layer at t+1


# ----------------------------------------------------------------------------------------------------------
# Textures


@functools.lru_cache(maxsize=64)
def _load_texture(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: texture image cannot be read")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.GaussianBlur(image, (0, 0), TEXTURE_BLUR_SIGMA)


def default_texture_paths(root: Path | None = None) -> list[Path]:
    root = root or ensure_data()
    return [root / rel for rel in DEFAULT_TEXTURES]


# Training-side videos whose frames also serve as textures of "footage" clips (never evaluation data).
VIDEO_TEXTURES = ("vtest", "tree", "bikes", "carphone", "bigbuckbunny", "megamind")
VIDEO_TEXTURE_FRAMES = 6  # evenly spaced frames per video
VIDEO_TEXTURE_MAX_SIDE = 640


@functools.lru_cache(maxsize=4)
def video_textures(root: str | None = None) -> tuple[np.ndarray, ...]:
    """Frames of the training-side videos (RGB, longest side <= 640, blurred like every texture), in a fixed
    order; decoded once per process. Videos that cannot be read are left out (logged)."""
    textures = []
    for name in VIDEO_TEXTURES:
        path = real_video(name, Path(root) if root else None)
        capture = cv2.VideoCapture(str(path))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in range(VIDEO_TEXTURE_FRAMES):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int((k + 0.5) * total / VIDEO_TEXTURE_FRAMES))
            ok, frame = capture.read()
            if not ok:
                continue
            scale = VIDEO_TEXTURE_MAX_SIDE / max(frame.shape[:2])
            if scale < 1:
                frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            textures.append(cv2.GaussianBlur(rgb, (0, 0), TEXTURE_BLUR_SIGMA))
        capture.release()
    return tuple(textures)


def _check_not_evaluation(paths: Sequence[Path]) -> None:
    for path in paths:
        if any(name in Path(path).name.lower() for name in EVALUATION_ONLY):
            raise ValueError(f"{path}: evaluation-only images must not be used as synthetic textures")


def _reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Mirror integer indices into [0, size) like OpenCV's BORDER_REFLECT_101 (no repeated edge pixel)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def sample_bilinear_reflect(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` (H×W×C) at float64 points, mirrored beyond the borders; N×C float64.

    Done in float64 (not cv2.remap, whose coordinates are quantised to 1/32 px) so that rendering is exact.
    """
    height, width = image.shape[:2]
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    xa, xb = _reflect_index(x0, width), _reflect_index(x0 + 1, width)
    ya, yb = _reflect_index(y0, height), _reflect_index(y0 + 1, height)
    img = image.astype(np.float64, copy=False) if image.dtype != np.uint8 else image
    top = img[ya, xa] * (1 - fx) + img[ya, xb] * fx
    bottom = img[yb, xa] * (1 - fx) + img[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


@dataclass
class TexturePlacement:
    """Canonical point q -> texture pixel ``q * scale + offset``."""

    texture: np.ndarray
    scale: float
    offset: np.ndarray

    def sample(self, q: np.ndarray) -> np.ndarray:
        u = q * self.scale + self.offset
        return sample_bilinear_reflect(self.texture, u[:, 0], u[:, 1])

    def sample_image(self, q: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Bilinear samples at the canonical points of a whole H×W frame (``q``: (H·W)×2), H×W×3 float32.

        ``cv2.remap`` instead of :meth:`sample`: ~10x faster; it rounds coordinates to 1/32 texture pixel,
        i.e. < 1/50 px in the frame and a small fraction of a grey level, while the ground truth stays
        analytic (the reconstruction test holds it to < 2 grey levels)."""
        u = (q * self.scale + self.offset).astype(np.float32).reshape(*shape, 2)
        out = cv2.remap(
            self.texture, u[..., 0], u[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers


def _apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = points @ matrix[:2, :2].T + matrix[:2, 2]
    w = points @ matrix[2, :2] + matrix[2, 2]
    return mapped / w[:, None]


def _sprite_box(
    layer, t: int, size: tuple[int, int] | None = None, margin: float = 2.0
) -> tuple[int, int, int, int] | None:
    """Pixel box ``(x0, y0, x1, y1)`` (end-exclusive) holding sprite ``layer`` in frame t, or None when it
    is not a sprite (or, given the frame ``size``, the box is most of the frame anyway). Its outline's
    points mapped to the frame bound it (polygon vertices exactly; an ellipse's 64 samples to < 0.2 % of
    its radius), and ``margin`` pixels cover that and the 2×2 supersampling offsets."""
    if not isinstance(layer, Sprite):
        return None
    outline = layer.from_canonical(layer.shape.boundary_points(), t)
    if not np.isfinite(outline).all():
        return None
    x0, y0 = np.floor(outline.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(outline.max(axis=0) + margin).astype(int) + 1
    if size is not None:
        height, width = size
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) > 0.6 * height * width:
            return None
    return int(x0), int(y0), int(x1), int(y1)


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _rotation_scale(angle: float, log_scale: float, shear: float = 0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    scale = np.exp(log_scale)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rot @ np.array([[scale, shear, 0.0], [0.0, scale, 0.0], [0.0, 0.0, 1.0]])


def _pixel_grid(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack((xs.ravel(), ys.ravel()), axis=1)


def _fit_motion_scale(measure: Callable[[float], float], target: float, max_disp: float) -> float:
    """The multiplier k of a motion's velocities whose largest per-frame displacement is ~``target``.

    Displacement grows about linearly with k (rotations and zooms are capped, so not exactly); a few
    multiplicative corrections reach the target, then k shrinks until the hard ``max_disp`` bound holds.
    """
    k = target
    for _ in range(6):
        disp = measure(k)
        if disp <= 1e-9:
            break
        k *= target / disp
    for _ in range(20):
        disp = measure(k)
        if disp <= max_disp:
            break
        k *= 0.95 * max_disp / disp
    return k


# ----------------------------------------------------------------------------------------------------------
# Layers


@dataclass
class SineWaves:
    """Non-rigid field ``D_t(q) = sum_j amp_j * sin(freq_j . q + phase_j + speed_j * t)``, amp_j 2-vectors."""

    amp: np.ndarray  # J×2
    freq: np.ndarray  # J×2 (radians per canonical unit)
    phase: np.ndarray  # J
    speed: np.ndarray  # J (radians per frame)

    def __call__(self, q: np.ndarray, t: int) -> np.ndarray:
        if len(self.phase) == 0:
            return np.zeros_like(q)
        arg = q @ self.freq.T + self.phase + self.speed * t  # N×J
        return np.sin(arg) @ self.amp

    def jacobian(self, q: np.ndarray, t: int) -> np.ndarray:
        """dD/dq at every point: N×2×2."""
        arg = q @ self.freq.T + self.phase + self.speed * t
        return np.einsum("nj,ja,jb->nab", np.cos(arg), self.amp, self.freq)

    def lipschitz(self) -> float:
        return float(np.sum(np.linalg.norm(self.amp, axis=1) * np.linalg.norm(self.freq, axis=1)))


def _newton_waves(
    waves: SineWaves, r: np.ndarray, t: int, q: np.ndarray, tolerance: float, iterations: int
) -> tuple[np.ndarray, bool]:
    """Newton iterations for ``q + D_t(q) = r`` from ``q``, in ``r``'s dtype, one sin/cos evaluation each
    and the 2×2 systems solved in closed form; returns (q, whether the residual fell below ``tolerance``)."""
    dtype = r.dtype
    freq, amp = waves.freq.astype(dtype), waves.amp.astype(dtype)
    phase, speed = waves.phase.astype(dtype), (waves.speed * t).astype(dtype)
    jac = [(waves.amp[:, a] * waves.freq[:, b]).astype(dtype) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    for _ in range(iterations):
        arg = q @ freq.T + phase + speed  # N×J, summed in the order the evaluation sets were made with
        residual = q + np.sin(arg) @ amp - r
        if np.max(np.abs(residual), initial=0.0) < tolerance:
            return q, True
        cos = np.cos(arg)  # dD_a/dq_b = Σ_j cos_j · amp_ja · freq_jb
        a, b, c, d = 1.0 + cos @ jac[0], cos @ jac[1], cos @ jac[2], 1.0 + cos @ jac[3]
        det = a * d - b * c
        q = q - np.stack(
            (
                (d * residual[:, 0] - b * residual[:, 1]) / det,
                (a * residual[:, 1] - c * residual[:, 0]) / det,
            ),
            axis=1,
        )
    return q, False


@dataclass
class WarpedPlane:
    """A full-frame layer: pixel ``p = H_t(q + D_t(q))`` for canonical point q (H_t: homography)."""

    homographies: list[np.ndarray]  # one per frame
    waves: SineWaves
    texture: TexturePlacement
    inverse_tolerance: float = 1e-10

    def from_canonical(self, q: np.ndarray, t: int) -> np.ndarray:
        return _apply_homography(self.homographies[t], q + self.waves(q, t))

    def to_canonical(self, p: np.ndarray, t: int, fast: bool = False) -> np.ndarray:
        """The canonical point of pixels ``p`` in frame t. ``fast`` (training): float32 Newton iterations
        first, to ~1e-3 px (numpy's float32 sin/cos are vectorised and cheaper than float64's), then float64
        ones to :data:`FAST_INVERSE_TOLERANCE` (1e-7 px, far below anything a loss can see, and one
        iteration instead of three from there: a mixed training clip 101 -> 85 ms); the default path stays
        bit-for-bit what the fixed evaluation sets were made with."""
        r = _apply_homography(np.linalg.inv(self.homographies[t]), p)
        if len(self.waves.phase) == 0:
            return r
        # Solve q + D_t(q) = r by Newton's method (I + dD/dq is invertible: the field's Lipschitz constant is
        # < 1); the plain fixed-point iteration q = r - D_t(q), a contraction, is the fallback.
        waves = self.waves
        tolerance = self.inverse_tolerance
        if fast:
            r32 = r.astype(np.float32)
            start = _newton_waves(waves, r32, t, r32, 1e-3, 10)[0].astype(np.float64)
            tolerance = max(tolerance, FAST_INVERSE_TOLERANCE)
        else:
            start = r - waves(r, t)
        q, converged = _newton_waves(waves, r, t, start, tolerance, 20)
        if converged:
            return q
        for _ in range(200):  # from where Newton stopped, as before
            step = r - waves(q, t)
            converged = np.max(np.abs(step - q), initial=0.0) < self.inverse_tolerance
            q = step
            if converged:
                break
        return q

    def contains(self, q: np.ndarray) -> np.ndarray:
        return np.ones(len(q), dtype=bool)


@dataclass
class StarPolygon:
    """Star-shaped polygon around the origin, vertices counter-clockwise at ``angles`` with ``radii``."""

    angles: np.ndarray
    radii: np.ndarray

    def vertices(self) -> np.ndarray:
        return np.stack((np.cos(self.angles), np.sin(self.angles)), axis=1) * self.radii[:, None]

    def boundary_points(self) -> np.ndarray:
        return self.vertices()

    def contains(self, q: np.ndarray) -> np.ndarray:
        verts = self.vertices()
        angle = np.mod(np.arctan2(q[:, 1], q[:, 0]), 2 * np.pi)
        angle = np.where(angle < self.angles[0], angle + 2 * np.pi, angle)
        edge = np.searchsorted(np.append(self.angles, self.angles[0] + 2 * np.pi), angle, side="right") - 1
        edge = np.clip(edge, 0, len(verts) - 1)
        a = verts[edge]
        b = verts[(edge + 1) % len(verts)]
        # Counter-clockwise edges with angular gaps < pi keep the origin on their left: inside = left too.
        cross = (b[:, 0] - a[:, 0]) * (q[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (q[:, 0] - a[:, 0])
        return cross >= 0


@dataclass
class Ellipse:
    axes: np.ndarray  # (a, b)

    def boundary_points(self) -> np.ndarray:
        theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack((np.cos(theta) * self.axes[0], np.sin(theta) * self.axes[1]), axis=1)

    def contains(self, q: np.ndarray) -> np.ndarray:
        return (q[:, 0] / self.axes[0]) ** 2 + (q[:, 1] / self.axes[1]) ** 2 <= 1.0


@dataclass
class Sprite:
    """A shape on its own affine trajectory: ``p = A_t q`` with ``A_t`` = translate · rotate · scale."""

    shape: StarPolygon | Ellipse
    affines: list[np.ndarray]  # one 3×3 per frame
    texture: TexturePlacement

    def from_canonical(self, q: np.ndarray, t: int) -> np.ndarray:
        return _apply_homography(self.affines[t], q)

    def to_canonical(self, p: np.ndarray, t: int, fast: bool = False) -> np.ndarray:
        """``fast`` changes nothing here: an affine inverse is exact and cheap."""
        return _apply_homography(np.linalg.inv(self.affines[t]), p)

    def contains(self, q: np.ndarray) -> np.ndarray:
        return self.shape.contains(q)


Layer = WarpedPlane | Sprite


# ----------------------------------------------------------------------------------------------------------
# Scenes


@dataclass
class Scene:
    """The layers of one clip (bottom first) and the means to render it with its exact ground truth."""

    size: tuple[int, int]
    clip_len: int
    layers: list[Layer]
    kind: str

    def top_layer(self, points: np.ndarray, t: int, boxed: bool = False) -> np.ndarray:
        """Index of the top layer whose shape covers each point (N×2 pixels) in frame t. ``boxed``: test a
        sprite only at the points inside its bounding box (the same answer, far fewer shape tests)."""
        label = np.zeros(len(points), dtype=np.int64)
        for k in range(1, len(self.layers)):
            layer = self.layers[k]
            box = _sprite_box(layer, t) if boxed else None
            if box is None:
                label[layer.contains(layer.to_canonical(points, t))] = k
                continue
            x0, y0, x1, y1 = box
            near = np.flatnonzero(
                (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
            )
            label[near[layer.contains(layer.to_canonical(points[near], t))]] = k
        return label

    def _coverage(
        self, layer: Layer, inside: np.ndarray, grid: np.ndarray, t: int, band_only: bool
    ) -> np.ndarray:
        """Anti-aliased coverage (H×W) of a sprite, 2×2 supersampled. ``band_only``: only in the band of
        pixels next to its edge (elsewhere the four sub-samples agree with the centre but for slivers thinner
        than a pixel); ~4x less shape testing."""
        if not band_only:
            hits = [layer.contains(layer.to_canonical(grid + off, t)) for off in SUPERSAMPLE_OFFSETS]
            return np.mean(hits, axis=0).reshape(inside.shape)
        coverage = inside.astype(np.float32)
        as_byte = inside.astype(np.uint8)
        kernel = np.ones((3, 3), np.uint8)
        band = (cv2.dilate(as_byte, kernel) != cv2.erode(as_byte, kernel)).ravel()
        if band.any():
            points = grid[band]
            hits = [layer.contains(layer.to_canonical(points + off, t)) for off in SUPERSAMPLE_OFFSETS]
            coverage.ravel()[band] = np.mean(hits, axis=0)
        return coverage

    def _render_boxed(
        self,
        layer: Sprite,
        box: tuple[int, int, int, int],
        grid: np.ndarray,
        t: int,
        image: np.ndarray,
        label: np.ndarray,
        k: int,
    ) -> np.ndarray:
        """Composite sprite ``layer`` over ``image`` (in place) inside its pixel ``box`` only and mark its
        pixels ``k`` in ``label``; returns every pixel's canonical point (NaN outside the box)."""
        height, width = self.size
        x0, y0, x1, y1 = box
        index = (np.arange(y0, y1)[:, None] * width + np.arange(x0, x1)[None, :]).ravel()
        points = grid[index]
        q = layer.to_canonical(points, t)
        shape = (y1 - y0, x1 - x0)
        colour = layer.texture.sample_image(q, shape)
        inside = layer.contains(q)
        label[index[inside]] = k
        coverage = self._coverage(layer, inside.reshape(shape), points, t, band_only=True)
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch * (1 - coverage[..., None]) + colour * coverage[..., None]
        full = np.full_like(grid, np.nan)
        full[index] = q
        return full

    def render(self, fast: bool = False) -> SyntheticClip:
        """Frames, exact flows and occlusion. ``fast`` (training): ``cv2.remap`` sampling and edge-band
        anti-aliasing, ~3x faster, frames within a grey level of the exact float64 rendering that the fixed
        evaluation sets keep (they must never change); the ground truth is the same either way."""
        height, width = self.size
        grid = _pixel_grid(height, width)
        frames = np.empty((self.clip_len, height, width, 3), dtype=np.uint8)
        labels = []
        canonical = []  # per frame, per layer: canonical points of every pixel centre
        for t in range(self.clip_len):
            label = np.zeros(len(grid), dtype=np.int64)
            per_layer = []
            image = np.zeros((height, width, 3), dtype=np.float32)
            for k, layer in enumerate(self.layers):
                box = _sprite_box(layer, t, (height, width)) if fast and k > 0 else None
                if box is not None:  # a sprite touches only its bounding box: render just that
                    per_layer.append(self._render_boxed(layer, box, grid, t, image, label, k))
                    continue
                q = layer.to_canonical(grid, t, fast=fast)
                per_layer.append(q)
                if fast:
                    colour = layer.texture.sample_image(q, (height, width))
                else:
                    colour = layer.texture.sample(q).reshape(height, width, 3)
                if k == 0:
                    image = colour
                    continue
                inside = layer.contains(q)
                label[inside] = k
                coverage = self._coverage(layer, inside.reshape(height, width), grid, t, band_only=fast)
                image = image * (1 - coverage[..., None]) + colour * coverage[..., None]
            frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
            labels.append(label)
            canonical.append(per_layer)

        flows = np.empty((self.clip_len - 1, height, width, 2), dtype=np.float32)
        occluded = np.empty((self.clip_len - 1, height, width), dtype=bool)
        for t in range(self.clip_len - 1):
            flow = np.empty_like(grid)
            for k, layer in enumerate(self.layers):
                mine = labels[t] == k
                flow[mine] = layer.from_canonical(canonical[t][k][mine], t + 1) - grid[mine]
            target = grid + flow
            outside = (
                (target[:, 0] < 0)
                | (target[:, 0] > width - 1)
                | (target[:, 1] < 0)
                | (target[:, 1] > height - 1)
            )
            covered = self.top_layer(target, t + 1, boxed=fast) != labels[t]
            flows[t] = flow.reshape(height, width, 2)
            occluded[t] = (outside | covered).reshape(height, width)
        return SyntheticClip(frames, flows, occluded)


def _max_step_displacement(
    layer: Layer, boundary_or_grid: np.ndarray, clip_len: int, in_pixels: bool
) -> float:
    """Largest |p_{t+1} - p_t| over the given points (pixels of frame t, or canonical points) and pairs."""
    largest = 0.0
    for t in range(clip_len - 1):
        q = layer.to_canonical(boundary_or_grid, t) if in_pixels else boundary_or_grid
        step = layer.from_canonical(q, t + 1) - layer.from_canonical(q, t)
        largest = max(largest, float(np.max(np.linalg.norm(step, axis=1))))
    return largest


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))


def random_shape(
    rng: np.random.Generator, min_radius: float = 0.5, min_aspect: float = 0.4
) -> StarPolygon | Ellipse:
    """A sprite outline inside the unit disc: a star polygon (3-9 vertices at radii ``min_radius``..1) or an
    ellipse (axes 1 and ``min_aspect``..1)."""
    if rng.random() < 0.6:
        n = int(rng.integers(3, 10))
        angles = (np.arange(n) + rng.uniform(-0.2, 0.2, size=n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
        angles = np.sort(np.mod(angles, 2 * np.pi))
        return StarPolygon(angles, rng.uniform(min_radius, 1.0, size=n))
    return Ellipse(np.array([1.0, rng.uniform(min_aspect, 1.0)]))


class SyntheticClips(Sequence[SyntheticClip]):
    """``count`` clips of ``clip_len`` frames, deterministic per ``(seed, index)``; indexing renders one.

    ``clips[i]`` is ``SyntheticClip(frames, flows, occluded)``: T×H×W×3 uint8, (T-1)×H×W×2 float32 and
    (T-1)×H×W bool.
    Largest per-frame displacements are drawn log-uniformly between ``min_disp`` and ``max_disp`` pixels
    (per clip for the camera, per sprite for sprites).
    """

    def __init__(
        self,
        seed: int,
        count: int,
        size: tuple[int, int] = (256, 320),
        clip_len: int = 3,
        kind: str = "mixed",
        max_disp: float = 80.0,
        min_disp: float = 0.25,
        sprites: tuple[int, int] = (2, 6),
        textures: Sequence[str | Path] | None = None,
        nuisances: NuisanceConfig | None = None,
        fast: bool = False,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if clip_len < 2:
            raise ValueError(f"clip_len must be at least 2, got {clip_len}")
        if min(size) < 8:
            raise ValueError(f"size must be at least 8×8, got {size}")
        if not 0 < min_disp <= max_disp:
            raise ValueError(f"need 0 < min_disp <= max_disp, got {min_disp}, {max_disp}")
        self.seed = seed
        self.count = count
        self.size = (int(size[0]), int(size[1]))
        self.clip_len = clip_len
        self.kind = kind
        self.max_disp = float(max_disp)
        self.min_disp = float(min_disp)
        self.sprite_range = sprites
        paths = [Path(p) for p in textures] if textures is not None else default_texture_paths()
        _check_not_evaluation(paths)
        self.texture_paths = paths
        self.nuisances = nuisances or NuisanceConfig()  # "footage" clips only
        self.fast = fast  # training: see Scene.render

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> SyntheticClip:  # type: ignore[override]
        scene = self.scene(index)
        clip = scene.render(fast=self.fast)
        if scene.kind != "footage":
            return clip
        rng = np.random.default_rng([self.seed, self._index(index), 7])  # its own stream: geometry unchanged
        return clip._replace(frames=apply_nuisances(clip.frames, clip.flows, rng, self.nuisances))

    def _index(self, index: int) -> int:
        if not -self.count <= index < self.count:
            raise IndexError(f"clip {index} out of range for {self.count} clips")
        return index % self.count

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._index(index)])

    def clip_kind(self, index: int) -> str:
        """``"smooth"`` or ``"sprites"``: the kind clip ``index`` is drawn as."""
        return self._draw_kind(self._rng(index))

    def _draw_kind(self, rng: np.random.Generator) -> str:
        draw = rng.random()  # always drawn, so a clip's other draws do not depend on ``kind``
        if self.kind != "mixed":
            return self.kind
        return "smooth" if draw < 0.5 else "sprites"

    def scene(self, index: int) -> Scene:
        """The layers of clip ``index`` (for inspection; ``clips[index]`` renders it)."""
        rng = self._rng(index)
        kind = self._draw_kind(rng)
        pool = [_load_texture(str(p)) for p in self.texture_paths]
        if kind == "footage":
            pool += list(video_textures())
        textures = [pool[i] for i in rng.permutation(len(pool))]
        if kind == "footage":
            layers = [self._background(rng, textures[0], non_rigid=rng.random() < 0.25)]
            count = int(rng.integers(0, FOOTAGE_MAX_OBJECTS + 1))
            for k in range(count):
                # Sizes log-uniform from a few pixels to half the frame: small objects are common.
                size_px = _log_uniform(rng, FOOTAGE_MIN_OBJECT_PX, 0.5 * min(self.size))
                layers.append(self._sprite(rng, textures[(k + 1) % len(textures)], size_px))
            return Scene(self.size, self.clip_len, layers, kind)
        if kind == "smooth":
            layers: list[Layer] = [self._background(rng, textures[0], non_rigid=True)]
        else:
            layers = [self._background(rng, textures[0], non_rigid=False)]
            count = int(rng.integers(self.sprite_range[0], self.sprite_range[1] + 1))
            for k in range(count):
                layers.append(self._sprite(rng, textures[(k + 1) % len(textures)]))
        return Scene(self.size, self.clip_len, layers, kind)

    # -- background: camera homography (+ non-rigid waves) --------------------------------------------------

    def _background(self, rng: np.random.Generator, texture: np.ndarray, non_rigid: bool) -> WarpedPlane:
        height, width = self.size
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        radius = float(np.hypot(width, height) / 2)
        # Unit motion (~1 px at the corners per component), mixed with random weights; k scales it.
        direction = rng.uniform(0, 2 * np.pi)
        weights = rng.uniform(0, 1, size=6) ** 2
        velocity = np.array([
            np.cos(direction) * (0.3 + weights[0]),
            np.sin(direction) * (0.3 + weights[0]),
            rng.normal() * weights[1] / radius,  # rotation (rad)
            rng.normal() * weights[2] / radius,  # log zoom
            rng.normal() * weights[3] * 0.5 / radius,  # shear
            rng.normal() * weights[4] * 0.5 / radius**2,  # perspective x
            rng.normal() * weights[5] * 0.5 / radius**2,  # perspective y
        ])  # fmt: skip
        acceleration = velocity * rng.uniform(-0.3, 0.3, size=7)
        caps = np.array([np.inf, np.inf, 0.2, 0.15, 0.1, 0.3 / radius, 0.3 / radius])

        zoom = rng.uniform(0.8, 1.5)
        offset = rng.uniform(0, 1, size=2) * np.array(texture.shape[1::-1])
        placement = TexturePlacement(texture, 1.0 / zoom, offset)

        if non_rigid:
            waves_count = int(rng.integers(2, 5))
            wavelength = rng.uniform(0.4, 1.5, size=waves_count) * max(height, width)
            freq_dir = rng.uniform(0, 2 * np.pi, size=waves_count)
            freq = np.stack((np.cos(freq_dir), np.sin(freq_dir)), axis=1) * (2 * np.pi / wavelength)[:, None]
            amp_dir = rng.uniform(0, 2 * np.pi, size=waves_count)
            share = rng.dirichlet(np.ones(waves_count)) * LIPSCHITZ_BUDGET * rng.uniform(0.3, 1.0)
            amp_len = share / np.linalg.norm(freq, axis=1)
            amp = np.stack((np.cos(amp_dir), np.sin(amp_dir)), axis=1) * amp_len[:, None]
            phase = rng.uniform(0, 2 * np.pi, size=waves_count)
            speed = rng.uniform(0.2, 1.0, size=waves_count) * rng.choice([-1.0, 1.0], size=waves_count)
        else:
            amp = freq = np.zeros((0, 2))
            phase = speed = np.zeros(0)

        def build(k: float) -> WarpedPlane:
            # Waves travel at a speed that grows with k too, so sub-pixel clips stay sub-pixel.
            waves = SineWaves(amp, freq, phase, np.clip(speed * k / 4.0, -np.pi / 2, np.pi / 2))
            homographies = [np.eye(3)]
            for t in range(self.clip_len - 1):
                p = np.clip((velocity + t * acceleration) * k, -caps, caps)
                step = _translation(*(centre + p[:2])) @ _rotation_scale(p[2], p[3], p[4])
                step = step @ np.array([[1, 0, 0], [0, 1, 0], [p[5], p[6], 1.0]]) @ _translation(*-centre)
                homographies.append(step @ homographies[-1])
            return WarpedPlane(homographies, waves, placement)

        probe = _pixel_grid(17, 17) * np.array([(width - 1) / 16, (height - 1) / 16])
        target = _log_uniform(rng, self.min_disp, self.max_disp)
        k = _fit_motion_scale(
            lambda k: _max_step_displacement(build(k), probe, self.clip_len, True), target, self.max_disp
        )
        return build(k)

    # -- sprites ---------------------------------------------------------------------------------------------

    def _sprite(self, rng: np.random.Generator, texture: np.ndarray, size_px: float | None = None) -> Sprite:
        height, width = self.size
        shape = random_shape(rng)
        drawn = rng.uniform(0.08, 0.3) * min(height, width)  # always drawn: later draws do not shift
        size_px = drawn if size_px is None else size_px
        start = rng.uniform([0, 0], [width - 1, height - 1])
        angle0 = rng.uniform(0, 2 * np.pi)
        direction = rng.uniform(0, 2 * np.pi)
        velocity = np.array([
            np.cos(direction),
            np.sin(direction),
            rng.normal() * rng.uniform(0, 1) / size_px,  # rotation (rad/frame)
            rng.normal() * rng.uniform(0, 0.5) / size_px,  # log zoom per frame
        ])  # fmt: skip
        acceleration = velocity * rng.uniform(-0.3, 0.3, size=4)
        caps = np.array([np.inf, np.inf, 0.35, 0.15])
        zoom = rng.uniform(0.8, 1.5)
        texture_offset = rng.uniform(0, 1, size=2) * np.array(texture.shape[1::-1])
        placement = TexturePlacement(texture, size_px / zoom, texture_offset)

        def build(k: float) -> Sprite:
            position, angle, log_scale = start.copy(), angle0, np.log(size_px)
            affines = []
            for t in range(self.clip_len):
                affines.append(_translation(*position) @ _rotation_scale(angle, log_scale))
                p = np.clip((velocity + t * acceleration) * k, -caps, caps)
                position, angle, log_scale = position + p[:2], angle + p[2], log_scale + p[3]
            return Sprite(shape, affines, placement)

        boundary = np.vstack((shape.boundary_points(), [[0.0, 0.0]]))
        target = _log_uniform(rng, self.min_disp, self.max_disp)
        k = _fit_motion_scale(
            lambda k: _max_step_displacement(build(k), boundary, self.clip_len, False), target, self.max_disp
        )
        return build(k)
