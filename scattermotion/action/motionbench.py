"""A motion-classification benchmark from real footage: only motion separates its classes.

Every clip is a real picture or a still of a real video, filmed by a virtual camera that moves in a
class-defined way; appearance (source, crop, scale, colour, brightness, contrast, hue, blur, noise) is drawn
at random for every clip from the same distribution for every class, so a classifier can only tell classes
apart by their motion. Train and test clips come from disjoint source footage, like UCF101's groups.

Classes (the camera's motion; what the picture does on screen in brackets; speeds are at the middle of the
frame's edge and drawn log-uniformly from sub-pixel to several pixels per frame):

- ``static`` (only a slight hand-held shake, present in every class)
- ``pan-left`` / ``pan-right`` / ``pan-up`` / ``pan-down`` (the scene slides right / left / down / up)
- ``zoom-in`` / ``zoom-out`` (the scene grows / shrinks about the centre)
- ``rotate-cw`` / ``rotate-ccw`` (the camera rolls clockwise / counter-clockwise: the scene turns the other
  way on screen)
- ``object-crossing-left-to-right`` / ``object-crossing-right-to-left``: a static camera (shake only) and an
  object, a textured blob cut from another picture, crossing the frame horizontally.

Every clip holds one such object, so its presence tells nothing: outside the crossing classes it is glued to
the scene and moves with it.

Layout (UCF101's, so :func:`~scattermotion.action.datasets.load_ucf101` reads it as it is)::

    OUT/<class>/v_<class>_g<GG>_c<CC>.mp4          GG: source footage (train and test groups disjoint)
    OUT/ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt
    OUT/motionbench.json                            settings and every clip's parameters

The build is deterministic in its settings (``seed``...), written into a temporary folder renamed into place
at the end, and a second call with the same settings finds it and does nothing. The evaluation-only images
(:data:`scattermotion.data.fetched.EVALUATION_ONLY`, the frame-pair sequences) are never used.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from scattermotion.data.fetched import EVALUATION_ONLY, ensure_data, frame_pairs, real_video
from scattermotion.errors import InputError
from scattermotion.io.atomic import write_json_atomic

CLASSES = (
    "static", "pan-left", "pan-right", "pan-up", "pan-down", "zoom-in", "zoom-out", "rotate-cw", "rotate-ccw",
    "object-crossing-left-to-right", "object-crossing-right-to-left",
)  # fmt: skip
TRAIN_VIDEOS = ("vtest", "bikes", "megamind", "bigbuckbunny")
TEST_VIDEOS = ("tree", "carphone")
TRAIN_PICTURES = (
    "opencv/baboon.jpg", "opencv/fruits.jpg", "opencv/building.jpg", "opencv/home.jpg", "opencv/messi5.jpg",
    "opencv/board.jpg", "opencv/starry_night.jpg", "opencv/orange.jpg", "opencv/butterfly.jpg",
    "opencv/stuff.jpg", "opencv/smarties.png", "opencv/squirrel_cls.jpg", "opencv/leuvenA.jpg",
    "opencv/aero1.jpg",
)  # fmt: skip
TEST_PICTURES = (
    "py/skimage/data/astronaut.png", "py/skimage/data/chelsea.png", "py/skimage/data/coffee.png",
    "py/skimage/data/rocket.jpg", "py/skimage/data/ihc.png", "py/skimage/data/brick.png",
    "py/skimage/data/gravel.png", "py/skimage/data/camera.png", "opencv/apple.jpg",
    "opencv/Blender_Suzanne1.jpg", "opencv/left.jpg", "opencv/pca_test1.jpg",
)  # fmt: skip
MANIFEST = "motionbench.json"
SPLITS_DIR = "ucfTrainTestlist"
VERSION = 2  # 2: clips encoded losslessly (lossy x264 did not decode to the same pixels on every build)
STILLS_PER_VIDEO = 24  # evenly spaced frames of each video serve as backgrounds
FPS = 25.0

# Motion and appearance ranges (speeds in output pixels per frame at the middle of the frame's edge).
CAMERA_SPEED = (0.4, 4.0)
OBJECT_SPEED = (1.0, 5.0)
SHAKE_SIGMA = (0.0, 0.2)
OBJECT_SIZE = (0.3, 0.55)  # of the frame's short side
VIEW_FRACTION = (0.35, 0.8)  # of the source's short side the first frame shows (before zoom/pan margins)
NOISE_SIGMA = (0.5, 4.0)  # grey levels


@dataclass(frozen=True)
class BenchSettings:
    per_class: int = 20  # training clips per class
    test_per_class: int = 10  # test clips per class
    frames: int = 16
    width: int = 112
    height: int = 112
    seed: int = 0
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        if self.per_class < 1 or self.test_per_class < 1:
            raise InputError(None, "per-class and test-per-class must be >= 1")
        if self.frames < 2:
            raise InputError(None, f"clips need at least 2 frames, got {self.frames}")
        if min(self.width, self.height) < 16:
            raise InputError(None, f"clips must be at least 16x16 pixels, got {self.width}x{self.height}")
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise InputError(None, f"classes must be two or more distinct names of {', '.join(CLASSES)}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["classes"] = list(self.classes)
        out["version"] = VERSION
        return out


@dataclass
class BenchResult:
    path: Path
    clips: int
    seconds: float
    built: bool  # False: an identical benchmark was already there
    manifest: dict = field(default_factory=dict)


# ---- footage ---------------------------------------------------------------------------------------------


def _check_allowed(path: Path, root: Path) -> None:
    """Never build from evaluation-only images or the reconstruction-evaluation frame pairs."""
    if any(tag in path.name.lower() for tag in EVALUATION_ONLY):
        raise ValueError(f"{path}: evaluation-only data must not be used in the benchmark")
    pair_files = {p.resolve() for pair in frame_pairs(root).values() for p in pair}
    if path.resolve() in pair_files:
        raise ValueError(f"{path}: frame-pair evaluation images must not be used in the benchmark")


class Footage:
    """The source pictures and video stills of one split, loaded once."""

    def __init__(self, split: str, root: Path):
        videos = TRAIN_VIDEOS if split == "train" else TEST_VIDEOS
        pictures = TRAIN_PICTURES if split == "train" else TEST_PICTURES
        self.names: list[str] = []
        self.images: list[tuple[np.ndarray, ...]] = []  # per source: one picture, or a video's stills
        for name in videos:
            path = real_video(name, root)
            _check_allowed(path, root)
            self.names.append(name)
            self.images.append(_video_stills(path))
        for rel in pictures:
            path = root / rel
            _check_allowed(path, root)
            self.names.append(Path(rel).stem)
            self.images.append((_read_rgb(path),))
        self.pictures = list(range(len(videos), len(self.names)))  # sources objects are cut from


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: cannot read the picture (fetch the data: scripts/fetch_data.sh)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@functools.lru_cache(maxsize=len(TRAIN_VIDEOS) + len(TEST_VIDEOS))
def _video_stills(path: Path) -> tuple[np.ndarray, ...]:
    """Evenly spaced frames of a video (only those are converted to RGB); cached for repeated builds."""
    from scattermotion.data.video import open_video

    source = open_video(path)
    step = max(1, source.frame_count // STILLS_PER_VIDEO)
    stills = tuple(source.frames(step=step))[:STILLS_PER_VIDEO]
    if not stills:
        raise InputError(path, "no frames could be decoded")
    return stills


# ---- geometry --------------------------------------------------------------------------------------------


@dataclass
class Motion:
    """The camera path: output ``p = s_t R(phi_t) (q - C - d_t) + c + shake_t`` for canvas point ``q``."""

    pan: np.ndarray  # (2,) canvas pixels per frame (camera translation)
    log_zoom: float  # per frame
    roll: float  # radians per frame, content angle on screen (y down: positive is clockwise)
    shake: np.ndarray  # T×2 output pixels

    def matrix(self, t: int, centre_canvas: np.ndarray, centre_out: np.ndarray) -> np.ndarray:
        scale = math.exp(self.log_zoom * t)
        angle = self.roll * t
        rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        origin = centre_canvas + self.pan * t
        return np.hstack([rot, (centre_out + self.shake[t] - rot @ origin)[:, None]])

    def extent(self, frames: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box (min, max) of the canvas points any frame shows, relative to the canvas centre."""
        corners = np.array(
            [[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], dtype=np.float64
        )
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        points = []
        for t in range(frames):
            full = np.vstack([self.matrix(t, np.zeros(2), centre), [0, 0, 1]])
            inverse = np.linalg.inv(full)
            points.append(corners @ inverse[:2, :2].T + inverse[:2, 2])
        points = np.concatenate(points)
        return points.min(axis=0), points.max(axis=0)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def camera_motion(name: str, rng: np.random.Generator, frames: int, width: int, height: int) -> Motion:
    """The camera path of class ``name`` (speeds in output pixels per frame at the frame's edge)."""
    shake = rng.normal(0.0, rng.uniform(*SHAKE_SIGMA), size=(frames, 2))
    pan = np.zeros(2)
    log_zoom = roll = 0.0
    half = min(width, height) / 2.0
    if name.startswith("pan-"):
        speed = _log_uniform(rng, *CAMERA_SPEED)
        drift = rng.uniform(-0.15, 0.15) * speed  # a real pan is never exactly on an axis
        # The camera moving left makes the scene slide right: the camera translation is the opposite.
        pan = {
            "pan-left": np.array([-speed, drift]),
            "pan-right": np.array([speed, drift]),
            "pan-up": np.array([drift, -speed]),
            "pan-down": np.array([drift, speed]),
        }[name]
    elif name.startswith("zoom-"):
        rate = _log_uniform(rng, *CAMERA_SPEED) / half
        log_zoom = rate if name == "zoom-in" else -rate
    elif name.startswith("rotate-"):
        rate = _log_uniform(rng, *CAMERA_SPEED) / half
        roll = (
            -rate if name == "rotate-cw" else rate
        )  # the camera rolls clockwise: the scene turns the other way
    return Motion(pan=pan, log_zoom=log_zoom, roll=roll, shake=shake)


# ---- appearance ------------------------------------------------------------------------------------------


def _jitter_colours(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random hue, saturation, per-channel tint, brightness, contrast, gamma; sometimes grey."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 180)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.3, 1.5), 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
    if rng.random() < 0.15:
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    out *= rng.uniform(0.8, 1.2, size=3)[None, None, :]  # tint (greys get colour too)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.6, 1.4) + mean * rng.uniform(0.6, 1.4)
    out = np.clip(out, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _object_sprite(picture: np.ndarray, diameter: int, rng: np.random.Generator) -> np.ndarray:
    """An RGBA blob (random smooth outline) cut from a random place of ``picture``, colours jittered."""
    size = diameter + 4  # room for the soft edge
    scale = rng.uniform(0.5, 1.5) * size / min(picture.shape[:2]) * 3.0
    scaled = cv2.resize(
        picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    if min(scaled.shape[:2]) < size:
        scaled = cv2.resize(picture, (size * 2, size * 2), interpolation=cv2.INTER_LINEAR)
    top = int(rng.integers(scaled.shape[0] - size + 1))
    left = int(rng.integers(scaled.shape[1] - size + 1))
    rgb = _jitter_colours(np.ascontiguousarray(scaled[top : top + size, left : left + size]), rng)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 10))
    radii = diameter / 2.0 * rng.uniform(0.6, 1.0, 10)
    aspect = rng.uniform(0.6, 1.0)
    centre = (size - 1) / 2.0
    polygon = np.stack([centre + radii * np.cos(angles), centre + aspect * radii * np.sin(angles)], axis=1)
    mask = np.zeros((size * 4, size * 4), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), 4.0)  # a smooth outline, anti-aliased when shrunk
    alpha = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
    return np.dstack([rgb, alpha])


def _composite(frame: np.ndarray, sprite: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Draw an RGBA sprite onto ``frame`` through the affine ``matrix`` (sprite pixels -> frame pixels)."""
    height, width = frame.shape[:2]
    warped = cv2.warpAffine(
        sprite, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    alpha = warped[..., 3:4].astype(np.float32) / 255.0
    return (frame * (1.0 - alpha) + warped[..., :3] * alpha + 0.5).astype(np.uint8)


def render_clip(
    name: str,
    background: np.ndarray,
    object_picture: np.ndarray,
    rng: np.random.Generator,
    frames: int = 16,
    width: int = 112,
    height: int = 112,
) -> tuple[np.ndarray, dict]:
    """One clip of class ``name``: ``T×H×W×3 uint8`` frames and its parameters."""
    crossing = name.startswith("object-crossing")
    motion = camera_motion("static" if crossing else name, rng, frames, width, height)
    low, high = motion.extent(frames, width, height)
    needed = high - low + 4.0
    src_h, src_w = background.shape[:2]
    zoom = max(
        min(width, height) / (rng.uniform(*VIEW_FRACTION) * min(src_w, src_h)),
        needed[0] / src_w,
        needed[1] / src_h,
    )
    canvas = cv2.resize(
        background,
        (max(1, round(src_w * zoom)), max(1, round(src_h * zoom))),
        interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR,
    )
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.3, 1.0))
    canvas = _jitter_colours(canvas, rng)
    canvas_h, canvas_w = canvas.shape[:2]
    centre = np.array(
        [rng.uniform(-low[0] + 1, max(-low[0] + 1, canvas_w - 2 - high[0])),
         rng.uniform(-low[1] + 1, max(-low[1] + 1, canvas_h - 2 - high[1]))]
    )  # fmt: skip
    diameter = max(6, round(rng.uniform(*OBJECT_SIZE) * min(width, height)))
    sprite = _object_sprite(object_picture, diameter, rng)
    half = (sprite.shape[0] - 1) / 2.0
    info: dict = {"class": name, "zoom": zoom}
    if crossing:
        speed = _log_uniform(rng, *OBJECT_SPEED)
        direction = 1.0 if name.endswith("left-to-right") else -1.0
        velocity = np.array([direction * speed, rng.uniform(-0.2, 0.2) * speed])
        middle = np.array(
            [width / 2 + rng.uniform(-1, 1) * width / 6, height / 2 + rng.uniform(-1, 1) * height / 5]
        )
        start = middle - velocity * (frames - 1) / 2.0
        info["speed"] = speed
    else:  # the object is part of the scene: pasted into the canvas near what the first frame shows
        spot = centre + rng.uniform(-0.3, 0.3, size=2) * np.array([width, height])
        canvas = _composite(canvas, sprite, np.array([[1.0, 0, spot[0] - half], [0, 1.0, spot[1] - half]]))
        info["speed"] = float(
            np.linalg.norm(motion.pan) + abs(motion.log_zoom) * min(width, height) / 2
            + abs(motion.roll) * min(width, height) / 2
        )  # fmt: skip
    centre_out = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    noise = rng.uniform(*NOISE_SIGMA)
    flicker = rng.normal(0.0, 0.01, size=frames)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        frame = cv2.warpAffine(
            canvas, motion.matrix(t, centre, centre_out), (width, height),
            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101,
        )  # fmt: skip
        if crossing:
            position = start + velocity * t + motion.shake[t]
            frame = _composite(
                frame, sprite, np.array([[1.0, 0, position[0] - half], [0, 1.0, position[1] - half]])
            )
        values = frame.astype(np.float32) * (1.0 + flicker[t]) + rng.normal(0.0, noise, size=frame.shape)
        out[t] = np.clip(values + 0.5, 0, 255).astype(np.uint8)
    info["noise"] = noise
    return out, info


# ---- the build -------------------------------------------------------------------------------------------


def clip_name(name: str, group: int, clip: int) -> str:
    return f"v_{name}_g{group:02d}_c{clip:02d}"


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    from scattermotion.io.video_writer import Mp4Writer

    with Mp4Writer(path, FPS, frames.shape[2], frames.shape[1], deterministic=True) as video:
        for frame in frames:
            video.write(frame)


def _build(
    folder: Path, settings: BenchSettings, root: Path, progress: Callable[[int, int], None] | None
) -> dict:
    classes = list(settings.classes)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    clips_info = []
    total = len(classes) * (settings.per_class + settings.test_per_class)
    done = 0
    group_offset = 0
    for split_index, split in enumerate(("train", "test")):
        footage = Footage(split, root)
        count = settings.per_class if split == "train" else settings.test_per_class
        for label, name in enumerate(classes):
            class_index = CLASSES.index(name)
            clips_in_group: dict[int, int] = {}
            for clip in range(count):
                rng = np.random.default_rng([settings.seed, split_index, class_index, clip])
                source = (clip + class_index) % len(footage.names)
                stills = footage.images[source]
                background = stills[int(rng.integers(len(stills)))]
                others = [p for p in footage.pictures if p != source]
                picture = footage.images[int(rng.choice(others))][0]
                frames, info = render_clip(
                    name, background, picture, rng, settings.frames, settings.width, settings.height
                )
                group = group_offset + source + 1
                clips_in_group[group] = clips_in_group.get(group, 0) + 1
                rel = f"{name}/{clip_name(name, group, clips_in_group[group])}.mp4"
                (folder / name).mkdir(exist_ok=True)
                _write_mp4(folder / rel, frames)
                lists[split].append(f"{rel} {label + 1}" if split == "train" else rel)
                rounded = {k: round(v, 5) if isinstance(v, float) else v for k, v in info.items()}
                clips_info.append(
                    {"file": rel, "split": split, "source": footage.names[source], "group": group, **rounded}
                )
                done += 1
                if progress is not None:
                    progress(done, total)
        group_offset += len(footage.names)
    splits = folder / SPLITS_DIR
    splits.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    (splits / "trainlist01.txt").write_text("".join(line + "\n" for line in lists["train"]))
    (splits / "testlist01.txt").write_text("".join(line + "\n" for line in lists["test"]))
    return {"settings": settings.to_dict(), "clips": clips_info}


def make_motion_bench(
    out: str | os.PathLike,
    settings: BenchSettings | None = None,
    data_root: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """Build the benchmark in ``out`` (see the module docstring); an identical one already there is kept."""
    settings = settings or BenchSettings()
    out = Path(out).expanduser()
    manifest_path = out / MANIFEST
    if out.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            raise InputError(out, "exists and is not a motion benchmark; choose another --out") from None
        if manifest.get("settings") != settings.to_dict():
            raise InputError(
                out, "holds a motion benchmark with other settings; remove it or choose another --out"
            )
        return BenchResult(out, len(manifest["clips"]), 0.0, False, manifest)
    root = Path(data_root) if data_root is not None else ensure_data()
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    temp.mkdir()
    start = time.perf_counter()
    try:
        manifest = _build(temp, settings, root, progress)
        write_json_atomic(temp / MANIFEST, manifest)  # written last: marks it complete
        os.rename(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return BenchResult(out, len(manifest["clips"]), time.perf_counter() - start, True, manifest)
