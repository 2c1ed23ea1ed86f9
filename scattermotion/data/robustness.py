"""Real-footage robustness pairs: training-side video frames under a known camera motion, with small
independent objects, sensor noise and a gain change, and exact ground-truth motion.

Issue 13: on real footage under a plain camera pan with ordinary sensor noise and a few percent of gain
change, our motion maps were blotchy and small moving objects were lost, where DIS and TV-L1 gave one clean
colour and a crisp shape. A pair here is exactly that situation, with the truth known:

- **Background**: a frame of a training-side video (:func:`~scattermotion.data.synthetic.video_textures`:
  vtest, tree, bikes, carphone, bigbuckbunny, megamind; never the evaluation data), shown 1:1 (magnified just
  enough where the frame is smaller than the pair), moved by a camera homography about the frame centre:
  a translation of ``CAMERA_SHIFT_PX`` pixels in any direction, a roll and a zoom that each move the corners
  by up to ``CAMERA_TURN_PX``.
- **Objects**: ``OBJECTS_PER_PAIR`` star polygons or ellipses ``OBJECT_ACROSS_PX`` pixels across, textured
  from another real frame, not overlapping; each is carried by the camera at its centre and moves by
  ``OBJECT_SPEED_PX`` pixels of its own in one of 8 directions (:data:`DIRECTIONS`, image axes: y down):
  its direction class is that motion relative to the background it sits on. The classes are balanced:
  the first object of pair ``i`` moves in direction ``i mod 8``, so any 8 consecutive pairs show every one.
- **Nuisances** (:mod:`scattermotion.data.nuisance`): Gaussian sensor noise of σ = 4 grey levels in each
  frame and a gain per frame (log-gain spread 3 %, so the two frames differ by a few percent).

Frames are rendered by the exact (float64) path of :class:`~scattermotion.data.synthetic.Scene`; the flow
goes from frame 1 to frame 2 (``frame1(p) ≈ frame2(p + flow(p))``). Pair ``i`` is a pure function of
``(seed, i)`` drawn from a stream of its own (:data:`STREAM`), disjoint from the training and evaluation
generators' streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from scattermotion.data.nuisance import NuisanceConfig, apply_nuisances
from scattermotion.data.synthetic import (
    Scene,
    SineWaves,
    Sprite,
    TexturePlacement,
    WarpedPlane,
    _apply_homography,
    _pixel_grid,
    _rotation_scale,
    _translation,
    random_shape,
    video_textures,
)
from scattermotion.errors import InputError

STREAM = 0x524F42  # "ROB": the first word of every draw, so no training/evaluation stream can coincide
DIRECTIONS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")  # k·45°
CAMERA_SHIFT_PX = (0.5, 4.0)
CAMERA_TURN_PX = 1.5  # largest corner displacement of the roll, and of the zoom
OBJECT_ACROSS_PX = (20.0, 60.0)
OBJECT_SPEED_PX = (1.5, 4.0)
OBJECTS_PER_PAIR = (1, 3)
RING_PX = 12  # width of the background ring around an object box (the read-out's reference)
GAP_PX = 4  # between object boxes
PLACEMENT_TRIES = 50
BORDER_PX = 8  # texture kept beyond the frame on every side, so camera motion never samples outside it
NUISANCES = NuisanceConfig(
    noise=1.0, noise_sigma=(4.0, 4.0), gain=1.0, gain_std=0.03, offset_std=0.0, blur=0.0, jpeg=0.0, grey=0.0
)


@dataclass(frozen=True)
class ObjectTruth:
    """One independent object: its box in frame 1 (x0, y0, x1, y1; exclusive ends), direction class and
    its own motion (px, relative to the background)."""

    box: tuple[int, int, int, int]
    direction: int
    own_motion: tuple[float, float]


class RobustnessPair(NamedTuple):
    frame1: np.ndarray  # H×W×3 uint8 RGB, with nuisances
    frame2: np.ndarray
    flow: np.ndarray  # H×W×2 float32, frame 1 -> frame 2, exact
    occluded: np.ndarray  # H×W bool: leaves the frame or is covered in frame 2
    objects: np.ndarray  # H×W int: 0 background, k the k-th object (top layer in frame 1)
    truths: tuple[ObjectTruth, ...]


def min_side_for(object_across: tuple[float, float]) -> int:
    """The smallest frame side that holds one object of the largest size with its ring and motion."""
    return int(np.ceil(object_across[1] + 2 * (RING_PX + CAMERA_SHIFT_PX[1] + CAMERA_TURN_PX * 2 + 2)))


class RobustnessPairs(Sequence[RobustnessPair]):
    """``count`` pairs of ``size`` (H, W) pixels; ``pairs[i]`` renders pair ``i`` (deterministic in
    ``(seed, i)``). ``nuisances`` (default :data:`NUISANCES`) and ``object_across`` are for tests."""

    def __init__(
        self,
        seed: int,
        count: int,
        size: tuple[int, int] = (240, 320),
        nuisances: NuisanceConfig = NUISANCES,
        object_across: tuple[float, float] = OBJECT_ACROSS_PX,
    ):
        if count < 1:
            raise InputError(None, f"need at least 1 pair, got {count}")
        if not 0 < object_across[0] <= object_across[1]:
            raise InputError(None, f"object sizes must satisfy 0 < min <= max, got {object_across}")
        need = min_side_for(object_across)
        if min(size) < need:
            problem = f"pairs must be at least {need}x{need} px for {object_across[1]:g} px objects"
            raise InputError(None, f"{problem}, got {size[0]}x{size[1]} (HxW)")
        self.seed, self.count = int(seed), int(count)
        self.size = (int(size[0]), int(size[1]))
        self.nuisances = nuisances
        self.object_across = (float(object_across[0]), float(object_across[1]))

    def __len__(self) -> int:
        return self.count

    def _rng(self, index: int, part: int) -> np.random.Generator:
        if not -self.count <= index < self.count:
            raise IndexError(f"pair {index} out of range for {self.count} pairs")
        return np.random.default_rng([STREAM, self.seed, index % self.count, part])

    def scene(self, index: int) -> tuple[Scene, tuple[ObjectTruth, ...]]:
        """The layers of pair ``index`` and its objects' truths (boxes are filled in by rendering)."""
        rng = self._rng(index, 0)
        index %= self.count
        textures = video_textures()
        height, width = self.size
        pick = int(rng.integers(len(textures)))
        layers: list[WarpedPlane | Sprite] = [self._background(rng, textures[pick])]
        camera = layers[0].homographies[1]
        others = [i for i in range(len(textures)) if i != pick]
        boxes: list[np.ndarray] = []
        truths = []
        for j in range(int(rng.integers(OBJECTS_PER_PAIR[0], OBJECTS_PER_PAIR[1] + 1))):
            radius = rng.uniform(*self.object_across) / 2
            margin = radius + RING_PX + CAMERA_SHIFT_PX[1] + 2 * CAMERA_TURN_PX + OBJECT_SPEED_PX[1]
            margin = min(margin, min(height, width) / 2 - 1)
            for _ in range(PLACEMENT_TRIES):
                centre = rng.uniform([margin, margin], [width - 1 - margin, height - 1 - margin])
                box = np.array([*(centre - radius), *(centre + radius)])
                if all(_apart(box, other) for other in boxes):
                    break
            else:
                continue  # no room: fewer objects in this pair
            boxes.append(box)
            # Balanced classes: the first object of pair i moves in direction i mod 8 (the others 3 and 6
            # further on), so any 8 consecutive pairs, and so either half of a run, show every direction.
            direction = (index + 3 * j) % len(DIRECTIONS)
            angle = direction * 2 * np.pi / len(DIRECTIONS)
            own = rng.uniform(*OBJECT_SPEED_PX) * np.array([np.cos(angle), np.sin(angle)])
            carried = _apply_homography(camera, centre[None])[0]
            shape = random_shape(rng, min_radius=0.7, min_aspect=0.6)
            spin = rng.uniform(0, 2 * np.pi)
            texture = textures[others[int(rng.integers(len(others)))]]
            offset = rng.uniform(0, 1, size=2) * np.array(texture.shape[1::-1])
            affines = [
                _translation(*position) @ _rotation_scale(spin, np.log(radius))
                for position in (centre, carried + own)
            ]
            layers.append(Sprite(shape, affines, TexturePlacement(texture, radius, offset)))
            truths.append(ObjectTruth((0, 0, 0, 0), direction, (float(own[0]), float(own[1]))))
        return Scene(self.size, 2, layers, "robustness"), tuple(truths)

    def _background(self, rng: np.random.Generator, texture: np.ndarray) -> WarpedPlane:
        height, width = self.size
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        radius = float(np.hypot(width, height) / 2)
        direction = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(*CAMERA_SHIFT_PX) * np.array([np.cos(direction), np.sin(direction)])
        roll = rng.uniform(-1, 1) * CAMERA_TURN_PX / radius
        log_zoom = rng.uniform(-1, 1) * CAMERA_TURN_PX / radius
        camera = _translation(*(centre + shift)) @ _rotation_scale(roll, log_zoom) @ _translation(*-centre)
        # 1:1 where the frame has room (BORDER_PX to spare on every side), magnified where it has not.
        tex_h, tex_w = texture.shape[:2]
        scale = min(1.0, (tex_w - 1 - 2 * BORDER_PX) / width, (tex_h - 1 - 2 * BORDER_PX) / height)
        room = np.array([tex_w - 1, tex_h - 1]) - scale * np.array([width - 1, height - 1]) - 2 * BORDER_PX
        offset = BORDER_PX + rng.uniform(0, 1, size=2) * np.maximum(room, 0)
        still = SineWaves(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0))
        return WarpedPlane([np.eye(3), camera], still, TexturePlacement(texture, scale, offset))

    def __getitem__(self, index: int) -> RobustnessPair:  # type: ignore[override]
        scene, truths = self.scene(index)
        clip = scene.render(fast=False)  # the exact path: float64 sampling, full supersampling
        height, width = self.size
        objects = scene.top_layer(_pixel_grid(height, width), 0).reshape(height, width)
        boxed = []
        for k, truth in enumerate(truths, start=1):
            ys, xs = np.nonzero(objects == k)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            boxed.append(ObjectTruth(box, truth.direction, truth.own_motion))
        frames = apply_nuisances(clip.frames, clip.flows, self._rng(index, 1), self.nuisances)
        return RobustnessPair(frames[0], frames[1], clip.flows[0], clip.occluded[0], objects, tuple(boxed))


def _apart(box: np.ndarray, other: np.ndarray) -> bool:
    """Whether two boxes (x0, y0, x1, y1) are at least ``GAP_PX`` apart on some axis."""
    return bool(
        box[0] >= other[2] + GAP_PX
        or other[0] >= box[2] + GAP_PX
        or box[1] >= other[3] + GAP_PX
        or other[1] >= box[3] + GAP_PX
    )
