"""Which files of a folder are its frames: the one listing every frame-folder reader uses.

A frame folder holds one image per frame (any mix of :data:`IMAGE_EXTENSIONS`), read in natural order
(``img_2`` before ``img_10``). Folders made for action recognition also hold flow images beside the frames;
they are recognised and left out:

- flow images are never frames: ``flow_x_*`` / ``flow_y_*`` (denseflow, ``scattermotion extract``),
  ``x_*`` / ``y_*`` (mmaction2's ``flow_extraction.py``) and ``flow_*`` (our other output formats);
- when ``img_*`` images are present the folder is a *rawframes* folder (denseflow, mmaction2
  ``build_rawframes.py`` or ``flow_extraction.py --save-rgb``): exactly the ``img_*`` images are its frames.

Hidden files and files that are not images are ignored. What was left out is logged in one line, once per
kind of folder in a process (a dataset of thousands of rawframes folders says it once).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from scattermotion.errors import InputError
from scattermotion.io.flow_jpeg import FLOW_IMAGE_PREFIXES

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
RGB_PREFIX = "img_"
# Flow images by naming style and the label each is reported under (first match wins); flow_* last: every
# other file scattermotion extract writes (flow_00001.png, ...).
_FLOW_STYLES = (
    *(
        (re.compile(re.escape(prefix) + r"\d"), f"{prefix}*")
        for pair in FLOW_IMAGE_PREFIXES
        for prefix in pair
    ),
    (re.compile(r"flow_"), "flow_*"),
)
_OTHERS = f"other images besides {RGB_PREFIX}*"
_reported: set[tuple[str, ...]] = set()  # kinds of folder whose skipped files were logged already


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def flow_style(name: str) -> str | None:
    """The label of the flow naming style of image ``name`` (``"flow_x_*"``, ``"x_*"``, ...), or None."""
    for pattern, label in _FLOW_STYLES:
        if pattern.match(name):
            return label
    return None


@dataclass
class FrameListing:
    """The frames of one folder and what was left out, counted by kind (``{"flow_x_*": 5, ...}``)."""

    folder: Path
    frames: list[Path]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def flow_images(self) -> int:
        return sum(count for label, count in self.skipped.items() if label != _OTHERS)

    @property
    def rawframes(self) -> bool:
        return bool(self.frames) and all(p.name.startswith(RGB_PREFIX) for p in self.frames)

    def note(self) -> str:
        """One line saying what was read and what was left out ("" when nothing was left out)."""
        if not self.skipped:
            return ""
        kinds = ", ".join(f"{count} {label}" for label, count in sorted(self.skipped.items()))
        taken = f"{len(self.frames)} {RGB_PREFIX}* frames" if self.rawframes else f"{len(self.frames)} frames"
        return f"{self.folder}: read {taken}; left out {kinds} (flow images and non-frames)"


def list_frames(folder: str | os.PathLike) -> FrameListing:
    """The frame images of ``folder`` in natural order (see the module docstring); ``InputError`` when it
    cannot be listed. An empty ``frames`` list is the caller's to judge."""
    folder = Path(folder)
    try:
        entries = [entry for entry in os.scandir(folder) if is_image_name(entry.name) and entry.is_file()]
    except OSError as err:
        raise InputError(folder, f"cannot list folder: {err.strerror or err}") from err
    skipped: dict[str, int] = {}
    candidates = []
    for entry in entries:
        style = flow_style(entry.name)
        if style is None:
            candidates.append(entry.name)
        else:
            skipped[style] = skipped.get(style, 0) + 1
    if any(name.startswith(RGB_PREFIX) for name in candidates):
        others = [name for name in candidates if not name.startswith(RGB_PREFIX)]
        if others:
            skipped[_OTHERS] = len(others)
        candidates = [name for name in candidates if name.startswith(RGB_PREFIX)]
    frames = [folder / name for name in sorted(candidates, key=natural_key)]
    return FrameListing(folder, frames, skipped)


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The frame images of ``folder`` (:func:`list_frames`), logging once per kind of folder what was left
    out."""
    listing = list_frames(folder)
    kind = tuple(sorted(listing.skipped))
    if kind and kind not in _reported:
        _reported.add(kind)
        log.warning("%s (said once for folders like this)", listing.note())
    return listing.frames


def has_frames(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a folder holding at least one frame image (False when it cannot be listed)."""
    try:
        return Path(folder).is_dir() and bool(list_frames(folder).frames)
    except InputError:
        return False
