"""Frame pairs with ground-truth motion: the real evaluation pairs, our synthetic sets, and loaders for the
standard layouts of public flow datasets (Sintel, KITTI 2012/2015, Middlebury, FlyingChairs).

The real pairs (motorcycle, aloe, graf) are for **evaluation only**, never for training.

Checked scales (photometric check: warp frame 2 by the ground-truth flow, mean absolute error on valid
pixels; see ``tests/test_flowsets.py``): both stereo disparity maps are at the resolution of their images,
in pixels, with no offset. Aloe (``aloeGT.png`` 1282×1110, same as the JPEGs): error 8.7 grey levels at
×1 against 32.8 at ×0.5, 32.2 at ×1.5, 17.5 / 16.2 at ×0.95 / ×1.05, 11.4 / 9.9 at offset −1 / +1 and
35.7 for zero flow. Motorcycle (741×500): 7.7 at ×1 against 14.8 / 14.3 at ×0.95 / ×1.05 and 32.2 at ×0.5.
The graf homography maps 0-based pixel centres of graf1 to graf3 (error 16.9, worse with ±0.5 px shifts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from scattermotion.data import fetched
from scattermotion.data.synthetic import SyntheticClips
from scattermotion.data.video import read_image
from scattermotion.errors import InputError
from scattermotion.io.flo import read_flo
from scattermotion.io.kitti import read_kitti


@dataclass
class FlowSample:
    """Two frames (H×W×3 uint8 RGB) and the motion from the first to the second (H×W×2 float32, NaN =
    unknown). ``occluded`` (H×W bool) is given where the set knows it."""

    name: str
    frame1: np.ndarray
    frame2: np.ndarray
    flow: np.ndarray
    occluded: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.flow).all(axis=2)


# ---- real evaluation pairs -------------------------------------------------------------------------------

DEFAULT_STEREO_SCALE = {"motorcycle": 0.5, "aloe": 1 / 3}


def _resize_area(image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Downscale with INTER_AREA; returns the image and the exact (x, y) factors of the rounded size."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return image, (1.0, 1.0)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), (size[0] / width, size[1] / height)


def _resize_disparity(disparity: np.ndarray, scale: float) -> np.ndarray:
    """Area-average the valid disparities (NaN = unknown); a low-res pixel is known only when its whole
    high-res footprint is known, and its disparity is rescaled to the new width."""
    valid = np.isfinite(disparity)
    filled = np.where(valid, disparity, 0).astype(np.float32)
    total, (sx, _) = _resize_area(filled, scale)
    coverage, _ = _resize_area(valid.astype(np.float32), scale)
    known = coverage > 1 - 1e-4
    return np.where(known, total / np.maximum(coverage, 1e-6), np.nan).astype(np.float32) * sx


def _stereo_flow(disparity: np.ndarray) -> np.ndarray:
    # Pixel x of the left image is at x - d in the right image.
    return np.stack((-disparity, np.zeros_like(disparity)), axis=2).astype(np.float32)


def load_stereo(name: str, scale: float | None = None, root: Path | None = None) -> FlowSample:
    """A stereo pair as a flow sample (left -> right, flow = (−disparity, 0)); ``scale`` defaults to 0.5 for
    motorcycle (741×500 -> 370×250) and 1/3 for aloe (1282×1110 -> 427×370)."""
    if name not in fetched.STEREO_PAIRS:
        raise ValueError(f"unknown stereo pair {name!r}; expected one of {', '.join(fetched.STEREO_PAIRS)}")
    scale = DEFAULT_STEREO_SCALE[name] if scale is None else scale
    left_path, right_path, disparity_path = fetched.stereo_pair(name, root)
    left, right = read_image(left_path), read_image(right_path)
    if name == "motorcycle":
        disparity = np.load(disparity_path)["arr_0"].astype(np.float32)  # Middlebury 2014: inf = unknown
        disparity[~np.isfinite(disparity)] = np.nan
    else:
        raw = cv2.imread(str(disparity_path), cv2.IMREAD_GRAYSCALE)  # Middlebury 2006: 0 = unknown
        if raw is None:
            raise InputError(disparity_path, "not a readable disparity image")
        disparity = np.where(raw > 0, raw.astype(np.float32), np.nan)
    if disparity.shape != left.shape[:2]:
        raise InputError(disparity_path, f"disparity is {disparity.shape}, image is {left.shape[:2]}")
    left, _ = _resize_area(left, scale)
    right, _ = _resize_area(right, scale)
    disparity = _resize_disparity(disparity, scale)
    return FlowSample(name, left, right, _stereo_flow(disparity))


def read_homography(path: str | os.PathLike) -> np.ndarray:
    """The 3×3 matrix of an OpenCV FileStorage XML (first matrix node) or a plain 9-number text file."""
    path = Path(path)
    text = path.read_text()
    if "<opencv_storage>" in text:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        try:
            node = storage.getFirstTopLevelNode()
            matrix = None if node.empty() else node.mat()
        finally:
            storage.release()
    else:
        try:
            matrix = np.array(text.split(), dtype=np.float64)
        except ValueError:
            matrix = None
    if matrix is None or matrix.size != 9:
        raise InputError(path, "expected a 3×3 homography")
    return np.asarray(matrix, dtype=np.float64).reshape(3, 3)


def homography_flow(
    homography: np.ndarray, size: tuple[int, int], target_size: tuple[int, int]
) -> np.ndarray:
    """Flow ``H·x − x`` on an H×W grid (``size`` = (H, W)); NaN where ``H·x`` leaves the target image."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack((xs, ys, np.ones_like(xs)), axis=2) @ homography.T
    with np.errstate(divide="ignore", invalid="ignore"):
        mapped = points[..., :2] / points[..., 2:3]
    flow = (mapped - np.stack((xs, ys), axis=2)).astype(np.float32)
    inside = (
        (points[..., 2] > 0)
        & (mapped[..., 0] >= 0)
        & (mapped[..., 0] <= target_size[1] - 1)
        & (mapped[..., 1] >= 0)
        & (mapped[..., 1] <= target_size[0] - 1)
    )
    flow[~inside] = np.nan
    return flow


def _to_resized(sx: float, sy: float) -> np.ndarray:
    # Pixel centres move as x_low = s·x + (s − 1)/2 under resizing (OpenCV's convention).
    return np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1.0]])


def load_homography(name: str = "graf", scale: float = 1.0, root: Path | None = None) -> FlowSample:
    """A planar scene seen from two viewpoints (graf: 800×640, motion up to ~290 px at full size)."""
    if name not in fetched.HOMOGRAPHY_PAIRS:
        raise ValueError(
            f"unknown homography pair {name!r}; expected one of {', '.join(fetched.HOMOGRAPHY_PAIRS)}"
        )
    path1, path2, matrix_path = fetched.homography_pair(name, root)
    frame1, frame2 = read_image(path1), read_image(path2)
    homography = read_homography(matrix_path)
    frame1, (sx1, sy1) = _resize_area(frame1, scale)
    frame2, (sx2, sy2) = _resize_area(frame2, scale)
    homography = _to_resized(sx2, sy2) @ homography @ np.linalg.inv(_to_resized(sx1, sy1))
    flow = homography_flow(homography, frame1.shape[:2], frame2.shape[:2])
    return FlowSample(name, frame1, frame2, flow)


# ---- synthetic sets --------------------------------------------------------------------------------------

# Fixed seeds and sizes: these sets are reference benchmarks, so they must never change.
SYNTHETIC_SETS = {
    "synthetic-smooth": dict(
        seed=20240601, count=8, size=(256, 320), clip_len=2, kind="smooth", max_disp=64.0
    ),
    "synthetic-sprites": dict(
        seed=20240602, count=8, size=(256, 320), clip_len=2, kind="sprites", max_disp=64.0
    ),
}


def load_synthetic_set(name: str) -> list[FlowSample]:
    clips = SyntheticClips(**SYNTHETIC_SETS[name])  # type: ignore[arg-type]
    samples = []
    for i, (frames, flows, occluded) in enumerate(clips):
        for t in range(len(flows)):
            samples.append(
                FlowSample(f"{name}/{i:03d}_{t:02d}", frames[t], frames[t + 1], flows[t], occluded[t])
            )
    return samples


# ---- registry --------------------------------------------------------------------------------------------

FLOW_SETS = ("motorcycle", "aloe", "graf", "synthetic-smooth", "synthetic-sprites")


def load_flow_set(name: str, root: Path | None = None) -> list[FlowSample]:
    """A built-in evaluation set by name (see ``FLOW_SETS``), at its reference scale."""
    if name in fetched.STEREO_PAIRS:
        return [load_stereo(name, root=root)]
    if name in fetched.HOMOGRAPHY_PAIRS:
        return [load_homography(name, root=root)]
    if name in SYNTHETIC_SETS:
        return load_synthetic_set(name)
    raise ValueError(f"unknown flow set {name!r}; expected one of {', '.join(FLOW_SETS)}")


# ---- standard dataset layouts (users' own copies) --------------------------------------------------------


@dataclass(frozen=True)
class PairFiles:
    """Where one sample of a dataset lives. ``flow_noc`` (KITTI) marks non-occluded pixels; ``occlusion``
    (Sintel) is an image that is white where occluded."""

    name: str
    image1: Path
    image2: Path
    flow: Path
    occlusion: Path | None = None
    flow_noc: Path | None = None


def read_flow_file(path: Path) -> np.ndarray:
    """``.flo`` or KITTI ``.png`` flow, NaN where unknown."""
    if path.suffix.lower() == ".png":
        return read_kitti(path)[0]
    return read_flo(path)


def load_pair(files: PairFiles) -> FlowSample:
    frame1, frame2 = read_image(files.image1), read_image(files.image2)
    flow = read_flow_file(files.flow)
    occluded = None
    if files.occlusion is not None:
        mask = cv2.imread(str(files.occlusion), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise InputError(files.occlusion, "not a readable occlusion mask")
        occluded = mask > 127
    elif files.flow_noc is not None:
        _, valid_noc = read_kitti(files.flow_noc)
        occluded = np.isfinite(flow).all(axis=2) & ~valid_noc
    for what, array in (("second frame", frame2), ("flow", flow), ("occlusion mask", occluded)):
        if array is not None and array.shape[:2] != frame1.shape[:2]:
            raise InputError(files.flow, f"{what} is {array.shape[:2]}, first frame is {frame1.shape[:2]}")
    return FlowSample(files.name, frame1, frame2, flow, occluded)


class FlowFolder(Sequence[FlowSample]):
    """The samples of a dataset on disk, read when indexed (a full Sintel or KITTI does not fit in memory)."""

    def __init__(self, files: list[PairFiles]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> FlowSample:  # type: ignore[override]
        return load_pair(self.files[index])


def _require(root: Path, files: list[PairFiles], expected: str) -> FlowFolder:
    if not files:
        raise InputError(root, f"no samples found; expected {expected}")
    return FlowFolder(files)


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def load_sintel(root: str | os.PathLike, pass_name: str = "clean", split: str = "training") -> FlowFolder:
    """MPI-Sintel: ``<split>/<pass>/<scene>/frame_%04d.png``, ``<split>/flow/<scene>/frame_%04d.flo`` (motion
    from frame i to i+1), occlusions in ``<split>/occlusions/<scene>/frame_%04d.png`` when present."""
    root = Path(root)
    if pass_name not in ("clean", "final"):
        raise ValueError(f"Sintel pass must be 'clean' or 'final', got {pass_name!r}")
    frames_root, flow_root = root / split / pass_name, root / split / "flow"
    files = []
    for scene_dir in sorted(p for p in frames_root.glob("*") if p.is_dir()):
        for flow_path in sorted((flow_root / scene_dir.name).glob("frame_*.flo")):
            index = int(flow_path.stem.split("_")[1])
            image1 = scene_dir / f"frame_{index:04d}.png"
            image2 = scene_dir / f"frame_{index + 1:04d}.png"
            if image1.is_file() and image2.is_file():
                occlusion = _optional(root / split / "occlusions" / scene_dir.name / f"frame_{index:04d}.png")
                name = f"{scene_dir.name}/frame_{index:04d}"
                files.append(PairFiles(name, image1, image2, flow_path, occlusion=occlusion))
    return _require(
        root, files, f"{split}/{pass_name}/<scene>/frame_0001.png and {split}/flow/<scene>/frame_0001.flo"
    )


def load_kitti(root: str | os.PathLike, year: int = 2015, split: str = "training") -> FlowFolder:
    """KITTI flow: 2015 ``training/image_2/%06d_10.png``, ``_11.png``; 2012 ``training/colored_0/`` (or the
    grey ``image_0/``); flow in ``training/flow_occ/%06d_10.png``; ``flow_noc/`` (when present) gives the
    occlusion mask as the pixels valid in flow_occ but not in flow_noc."""
    root = Path(root)
    if year not in (2012, 2015):
        raise ValueError(f"KITTI year must be 2012 or 2015, got {year}")
    base = root / split
    if year == 2015:
        image_dir = base / "image_2"
    else:
        image_dir = base / "colored_0" if (base / "colored_0").is_dir() else base / "image_0"
    files = []
    for flow_path in sorted((base / "flow_occ").glob("*_10.png")):
        stem = flow_path.name[: -len("_10.png")]
        image1, image2 = image_dir / f"{stem}_10.png", image_dir / f"{stem}_11.png"
        if image1.is_file() and image2.is_file():
            noc = _optional(base / "flow_noc" / flow_path.name)
            files.append(PairFiles(stem, image1, image2, flow_path, flow_noc=noc))
    return _require(
        root, files, f"{split}/flow_occ/000000_10.png and {image_dir.relative_to(root)}/000000_10.png"
    )


def load_middlebury(root: str | os.PathLike) -> FlowFolder:
    """Middlebury flow (public GT): ``other-data/<Seq>/frame10.png``, ``frame11.png`` and
    ``other-gt-flow/<Seq>/flow10.flo``."""
    root = Path(root)
    files = []
    for flow_path in sorted((root / "other-gt-flow").glob("*/flow10.flo")):
        sequence = flow_path.parent.name
        image1 = root / "other-data" / sequence / "frame10.png"
        image2 = root / "other-data" / sequence / "frame11.png"
        if image1.is_file() and image2.is_file():
            files.append(PairFiles(sequence, image1, image2, flow_path))
    return _require(
        root, files, "other-gt-flow/<Seq>/flow10.flo and other-data/<Seq>/frame10.png, frame11.png"
    )


def load_flying_chairs(root: str | os.PathLike, split: str | None = None) -> FlowFolder:
    """FlyingChairs: ``data/%05d_img1.ppm``, ``%05d_img2.ppm``, ``%05d_flow.flo`` (``root`` may also be the
    ``data`` folder itself). ``split`` "train"/"val" uses ``FlyingChairs_train_val.txt`` (1 = train, 2 = val)
    from ``root``."""
    root = Path(root)
    data = root / "data" if (root / "data").is_dir() else root
    flow_paths = sorted(data.glob("*_flow.flo"))
    if split is not None:
        if split not in ("train", "val"):
            raise ValueError(f"FlyingChairs split must be 'train' or 'val', got {split!r}")
        split_file = root / "FlyingChairs_train_val.txt"
        try:
            labels = split_file.read_text().split()
        except OSError as err:
            raise InputError(split_file, f"cannot read: {err.strerror or err}") from err
        wanted = "1" if split == "train" else "2"
        keep = {
            i + 1 for i, label in enumerate(labels) if label == wanted
        }  # file lines are samples 1, 2, ...
        flow_paths = [p for p in flow_paths if int(p.name.split("_")[0]) in keep]
    files = []
    for flow_path in flow_paths:
        stem = flow_path.name[: -len("_flow.flo")]
        image1, image2 = data / f"{stem}_img1.ppm", data / f"{stem}_img2.ppm"
        if image1.is_file() and image2.is_file():
            files.append(PairFiles(stem, image1, image2, flow_path))
    return _require(root, files, "data/00001_img1.ppm, 00001_img2.ppm, 00001_flow.flo")


STANDARD_LAYOUTS: dict[str, Callable[..., FlowFolder]] = {
    "sintel": load_sintel,
    "kitti": load_kitti,
    "middlebury": load_middlebury,
    "flyingchairs": load_flying_chairs,
}


def load_dataset_folder(layout: str, root: str | os.PathLike, **options) -> FlowFolder:
    """A user's copy of a public dataset by layout name (``STANDARD_LAYOUTS``); options go to its loader
    (``pass_name`` for Sintel, ``year`` for KITTI, ``split`` for FlyingChairs)."""
    if layout not in STANDARD_LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; expected one of {', '.join(STANDARD_LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    return STANDARD_LAYOUTS[layout](root, **options)
