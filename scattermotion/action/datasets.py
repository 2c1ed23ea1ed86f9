"""Action-recognition datasets in the layouts users have, read into one list of labelled videos.

Layouts (``layout=``):

- ``ucf101``: ``ROOT/<Class>/v_<Class>_gXX_cYY.avi`` and the official ``ucfTrainTestlist/`` folder
  (``classInd.txt`` "1 ApplyEyeMakeup", ``trainlist0K.txt`` "Class/v_..avi 1", ``testlist0K.txt``
  "Class/v_..avi").
  The split folder is looked for in ROOT and beside it unless ``splits_dir`` is given. File names in the
  official lists differ in case from the files for a few classes (``HandStandPushups``), so a missing file is
  looked up case-insensitively in its class folder.
- ``hmdb51``: ``ROOT/<class>/<name>.avi`` and ``testTrainMulti_7030_splits/<class>_test_split<K>.txt`` with
  lines "name.avi 1|2|0" (1 = train, 2 = test, 0 = unused). Classes in sorted order.
- ``kinetics``: a CSV with header ``label,youtube_id,time_start,time_end,split`` (more columns are ignored);
  files at ``ROOT/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (a label's spaces may also be
  underscores in the folder name). ``subset`` keeps rows whose split matches ("val" = "validate").
- ``rawframes``: pre-extracted frame/flow folders in the denseflow layout,
  ``ROOT/<class>/<video>/img_00001.jpg, flow_x_00001.jpg, flow_y_00001.jpg``; labels from an annotation file
  (``list_file``: "class/video num_frames label", MMAction's rawframe format, or "class/video label") or from
  the class folders.
- ``folders``: ``ROOT/<class>/<video file>`` with no split files (or a ``list_file`` "path label").

Every video becomes a :class:`VideoRecord` whose ``name`` (its path relative to ROOT without the extension,
``Class/v_Class_g01_c01``) is the key under which motion caches and pre-extracted flow folders are found.
Labels are 0-based indices into :attr:`VideoSet.classes`. Bad layouts raise one-line ``InputError``s.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from scattermotion.data.frame_folder import list_frames, natural_key
from scattermotion.errors import InputError
from scattermotion.inputs import VIDEO_EXTENSIONS

LAYOUTS = ("ucf101", "hmdb51", "kinetics", "rawframes", "folders")
UCF_SPLITS_DIR = "ucfTrainTestlist"
HMDB_SPLITS_DIR = "testTrainMulti_7030_splits"
SUBSET_ALIASES = {"train": ("train", "training"), "test": ("test", "testing"), "val": ("val", "validate")}

OnMissing = Literal["error", "skip"]


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video: a video file (``kind="video"``) or a frame folder (``kind="frames"``)."""

    path: Path
    label: int
    name: str  # relative to the dataset root, no extension: "Class/v_Class_g01_c01"
    kind: str = "video"


@dataclass
class VideoSet:
    """The videos of one subset of a dataset, with the class names their labels index."""

    records: list[VideoRecord]
    classes: list[str]
    root: Path
    layout: str
    subset: str | None = None
    skipped: list[Path] = field(default_factory=list)  # listed but missing (on_missing="skip")

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[int]:
        return [r.label for r in self.records]


# ---- helpers ----------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a text file (``InputError`` if it cannot be read)."""
    if not path.is_file():
        raise InputError(path, "split/list file not found" if not path.exists() else "not a file")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _record_name(rel: str) -> str:
    """``Class/v_x.avi`` -> ``Class/v_x`` (POSIX separators, no extension)."""
    rel_path = PurePosixPath(rel.replace("\\", "/"))
    return str(rel_path.with_suffix("")) if rel_path.suffix.lower() in VIDEO_EXTENSIONS else str(rel_path)


class _Resolver:
    """Finds listed files, case-insensitively as a fallback, and collects the missing ones."""

    def __init__(self, on_missing: OnMissing):
        if on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        self.on_missing = on_missing
        self.missing: list[Path] = []
        self._listings: dict[Path, dict[str, Path]] = {}

    def find(self, candidates: list[Path]) -> Path | None:
        for path in candidates:
            if path.exists():
                return path
        for path in candidates:  # e.g. UCF101's HandstandPushups/v_HandStandPushups_g01_c01.avi
            listing = self._listings.get(path.parent)
            if listing is None:
                try:
                    listing = {p.name.lower(): p for p in path.parent.iterdir()}
                except OSError:
                    listing = {}
                self._listings[path.parent] = listing
            if path.name.lower() in listing:
                return listing[path.name.lower()]
        self.missing.append(candidates[0])
        return None

    def finish(self, source: Path, total: int) -> list[Path]:
        if self.missing and self.on_missing == "error":
            first = self.missing[0]
            raise InputError(
                first,
                f"listed in {source} but missing ({len(self.missing)} of {total} missing; "
                "pass on_missing='skip' / --skip-missing to use the rest)",
            )
        return self.missing


def _find_splits_dir(root: Path, name: str, splits_dir: str | os.PathLike | None) -> Path:
    if splits_dir is not None:
        path = Path(splits_dir)
        if not path.is_dir():
            raise InputError(path, "split folder not found")
        return path
    for candidate in (root / name, root.parent / name):
        if candidate.is_dir():
            return candidate
    raise InputError(root, f"no {name}/ folder in it or beside it (pass the split folder explicitly)")


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(root, "dataset folder not found" if not root.exists() else "not a folder")
    return root


def _check_split(split: int, allowed: tuple[int, ...]) -> None:
    if split not in allowed:
        raise InputError(None, f"split must be one of {allowed}, got {split}")


# ---- UCF101 -----------------------------------------------------------------------------------------------


def load_ucf101(
    root: str | os.PathLike,
    subset: str = "train",
    split: int = 1,
    splits_dir: str | os.PathLike | None = None,
    on_missing: OnMissing = "error",
) -> VideoSet:
    """UCF101 (or any dataset written in its layout, like the generated motion benchmark)."""
    root = _check_root(root)
    _check_split(split, (1, 2, 3))
    folder = _find_splits_dir(root, UCF_SPLITS_DIR, splits_dir)
    class_file = folder / "classInd.txt"
    classes: list[str] = []
    for line in _read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise InputError(class_file, f"expected lines 'INDEX ClassName', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise InputError(class_file, f"class indices must run 1, 2, 3, ...; got {line!r}")
        classes.append(parts[1])
    if not classes:
        raise InputError(class_file, "no classes listed")
    index = {name.lower(): i for i, name in enumerate(classes)}
    if subset not in ("train", "test"):
        raise InputError(None, f"UCF101 subset must be train or test, got {subset!r}")
    list_file = folder / f"{subset}list{split:02d}.txt"
    lines = _read_lines(list_file)
    resolver = _Resolver(on_missing)
    records = []
    for line in lines:
        parts = line.split()
        rel = parts[0]
        class_name = PurePosixPath(rel).parts[0] if "/" in rel else None
        if class_name is None or class_name.lower() not in index:
            raise InputError(
                list_file, f"entry {rel!r} is not 'ClassName/video' with a class of classInd.txt"
            )
        label = index[class_name.lower()]
        if len(parts) > 1:  # trainlist: 1-based label; it must agree with the folder
            if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                raise InputError(list_file, f"label {parts[1]!r} of {rel!r} disagrees with classInd.txt")
        path = resolver.find([root / rel])
        if path is not None:
            records.append(VideoRecord(path, label, _record_name(rel)))
    skipped = resolver.finish(list_file, len(lines))
    if not records:
        raise InputError(list_file, "no videos of this list exist under the dataset folder")
    return VideoSet(records, classes, root, "ucf101", subset, skipped)


# ---- HMDB51 -----------------------------------------------------------------------------------------------


def load_hmdb51(
    root: str | os.PathLike,
    subset: str = "train",
    split: int = 1,
    splits_dir: str | os.PathLike | None = None,
    on_missing: OnMissing = "error",
) -> VideoSet:
    """HMDB51: class folders and ``<class>_test_split<K>.txt`` files marking videos 1 (train) / 2 (test)."""
    root = _check_root(root)
    _check_split(split, (1, 2, 3))
    folder = _find_splits_dir(root, HMDB_SPLITS_DIR, splits_dir)
    suffix = f"_test_split{split}.txt"
    split_files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    if not split_files:
        raise InputError(folder, f"no *{suffix} files")
    wanted = {"train": "1", "test": "2"}.get(subset)
    if wanted is None:
        raise InputError(None, f"HMDB51 subset must be train or test, got {subset!r}")
    classes = [p.name[: -len(suffix)] for p in split_files]
    resolver = _Resolver(on_missing)
    records, total = [], 0
    for label, (class_name, split_file) in enumerate(zip(classes, split_files, strict=True)):
        for line in _read_lines(split_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise InputError(split_file, f"expected lines 'video.avi 0|1|2', got {line!r}")
            if parts[1] != wanted:
                continue
            total += 1
            rel = f"{class_name}/{parts[0]}"
            path = resolver.find([root / rel])
            if path is not None:
                records.append(VideoRecord(path, label, _record_name(rel)))
    skipped = resolver.finish(folder, total)
    if not records:
        raise InputError(folder, f"no {subset} videos of split {split} exist under {root}")
    return VideoSet(records, classes, root, "hmdb51", subset, skipped)


# ---- Kinetics ---------------------------------------------------------------------------------------------


def kinetics_file_name(youtube_id: str, start: float, end: float, ext: str = ".mp4") -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4`` as the official download scripts name clips."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}{ext}"


def load_kinetics(
    root: str | os.PathLike,
    csv_file: str | os.PathLike,
    subset: str | None = None,
    classes: list[str] | None = None,
    on_missing: OnMissing = "error",
) -> VideoSet:
    """Kinetics clips listed in an annotation CSV. ``classes`` fixes the label order (default: the sorted
    labels of the CSV, which for the official files is the same in every split)."""
    root = _check_root(root)
    csv_path = Path(csv_file)
    lines = _read_lines(csv_path)
    rows = list(csv.DictReader(lines))
    needed = {"label", "youtube_id", "time_start", "time_end", "split"}
    if not rows or not needed <= set(rows[0]):
        raise InputError(csv_path, f"expected a header with {', '.join(sorted(needed))}")
    if subset is not None:
        accepted = SUBSET_ALIASES.get(subset, (subset,))
        rows = [row for row in rows if row["split"] in accepted]
        if not rows:
            raise InputError(csv_path, f"no rows with split {subset!r}")
    classes = list(classes) if classes is not None else sorted({row["label"] for row in rows})
    index = {name: i for i, name in enumerate(classes)}
    resolver = _Resolver(on_missing)
    records = []
    for line_no, row in enumerate(rows, start=2):
        label = row["label"]
        if label not in index:
            raise InputError(csv_path, f"row {line_no}: label {label!r} is not one of the classes")
        try:
            name = kinetics_file_name(row["youtube_id"], float(row["time_start"]), float(row["time_end"]))
        except ValueError as err:
            raise InputError(csv_path, f"row {line_no}: bad time_start/time_end ({err})") from err
        folders = [label, label.replace(" ", "_")] if " " in label else [label]
        candidates = [root / row["split"] / folder / name for folder in folders]
        path = resolver.find(candidates)
        if path is not None:
            rel = path.relative_to(root).as_posix()
            records.append(VideoRecord(path, index[label], _record_name(rel)))
    skipped = resolver.finish(csv_path, len(rows))
    if not records:
        raise InputError(csv_path, f"none of its clips exist under {root}")
    return VideoSet(records, classes, root, "kinetics", subset, skipped)


# ---- rawframes (denseflow) and plain class folders --------------------------------------------------------


def is_frame_folder(path: Path) -> bool:
    """A rawframes folder: ``img_*`` frames or flow images (``flow_x_*``, mmaction2's ``x_*``) inside."""
    try:
        if not path.is_dir():
            return False
        listing = list_frames(path)
    except (OSError, InputError):
        return False
    return listing.rawframes or listing.flow_images > 0


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    return folders


def _parse_list(
    list_file: Path, root: Path, kind: str, classes: list[str] | None, on_missing: OnMissing
) -> tuple[list[VideoRecord], list[str], list[Path]]:
    """A list file "path label" or "path num_frames label" (MMAction); labels are 0-based integers."""
    lines = _read_lines(list_file)
    resolver = _Resolver(on_missing)
    records = []
    for line in lines:
        parts = line.split()
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
            raise InputError(list_file, f"expected 'path label' or 'path num_frames label', got {line!r}")
        label = int(parts[-1])
        path = resolver.find([root / parts[0]])
        if path is not None:
            records.append(VideoRecord(path, label, _record_name(parts[0]), kind))
    skipped = resolver.finish(list_file, len(lines))
    count = max((r.label for r in records), default=-1) + 1
    if classes is None:
        folders = sorted({PurePosixPath(r.name).parts[0] for r in records if "/" in r.name})
        classes = folders if len(folders) == count else [str(i) for i in range(count)]
    elif count > len(classes):
        raise InputError(list_file, f"label {count - 1} is out of range for {len(classes)} classes")
    return records, classes, skipped


def load_rawframes(
    root: str | os.PathLike,
    list_file: str | os.PathLike | None = None,
    classes: list[str] | None = None,
    on_missing: OnMissing = "error",
) -> VideoSet:
    """Pre-extracted ``ROOT/<class>/<video>/img_%05d.jpg`` (+ ``flow_x/flow_y``) folders."""
    root = _check_root(root)
    if list_file is not None:
        records, classes, skipped = _parse_list(Path(list_file), root, "frames", classes, on_missing)
        for record in records:
            if not is_frame_folder(record.path):
                raise InputError(record.path, "not a frame folder (no img_*, flow_x_* or x_* images inside)")
        return VideoSet(records, classes, root, "rawframes", None, skipped)
    class_dirs = _class_folders(root)
    classes = [p.name for p in class_dirs]
    records = []
    for label, class_dir in enumerate(class_dirs):
        for video in sorted(class_dir.iterdir(), key=lambda p: natural_key(p.name)):
            if is_frame_folder(video):
                records.append(VideoRecord(video, label, f"{class_dir.name}/{video.name}", "frames"))
    if not records:
        raise InputError(root, "no <class>/<video>/ folders with img_*, flow_x_* or x_* images inside")
    return VideoSet(records, classes, root, "rawframes")


def load_folders(
    root: str | os.PathLike,
    list_file: str | os.PathLike | None = None,
    classes: list[str] | None = None,
    on_missing: OnMissing = "error",
) -> VideoSet:
    """``ROOT/<class>/<video file>`` (every video, classes sorted), or the videos of a "path label" list."""
    root = _check_root(root)
    if list_file is not None:
        records, classes, skipped = _parse_list(Path(list_file), root, "video", classes, on_missing)
        return VideoSet(records, classes, root, "folders", None, skipped)
    class_dirs = _class_folders(root)
    classes = [p.name for p in class_dirs]
    records = []
    for label, class_dir in enumerate(class_dirs):
        for video in sorted(class_dir.iterdir(), key=lambda p: natural_key(p.name)):
            if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                records.append(VideoRecord(video, label, f"{class_dir.name}/{video.stem}"))
    if not records:
        raise InputError(root, "no <class>/<video file> found (expected class folders of videos)")
    return VideoSet(records, classes, root, "folders")


# ---- one entry point --------------------------------------------------------------------------------------


def detect_layout(root: str | os.PathLike, csv_file: str | os.PathLike | None = None) -> str:
    """Guess the layout: a CSV means Kinetics, split folders mean UCF101/HMDB51, frame folders rawframes."""
    root = _check_root(root)
    if csv_file is not None:
        return "kinetics"
    for name, layout in ((UCF_SPLITS_DIR, "ucf101"), (HMDB_SPLITS_DIR, "hmdb51")):
        if (root / name).is_dir() or (root.parent / name).is_dir():
            return layout
    for class_dir in _class_folders(root):
        for child in class_dir.iterdir():
            return "rawframes" if is_frame_folder(child) else "folders"
    return "folders"


def load_videos(
    root: str | os.PathLike,
    layout: str = "auto",
    subset: str | None = "train",
    split: int = 1,
    splits_dir: str | os.PathLike | None = None,
    csv_file: str | os.PathLike | None = None,
    list_file: str | os.PathLike | None = None,
    classes: list[str] | None = None,
    on_missing: OnMissing = "error",
) -> VideoSet:
    """Any supported layout (``layout="auto"`` guesses it, see :func:`detect_layout`)."""
    if layout == "auto":
        layout = detect_layout(root, csv_file)
    if layout == "ucf101":
        return load_ucf101(root, subset or "train", split, splits_dir, on_missing)
    if layout == "hmdb51":
        return load_hmdb51(root, subset or "train", split, splits_dir, on_missing)
    if layout == "kinetics":
        if csv_file is None:
            raise InputError(None, "the kinetics layout needs an annotation CSV (--csv)")
        return load_kinetics(root, csv_file, subset, classes, on_missing)
    if layout == "rawframes":
        return load_rawframes(root, list_file, classes, on_missing)
    if layout == "folders":
        return load_folders(root, list_file, classes, on_missing)
    raise InputError(None, f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
