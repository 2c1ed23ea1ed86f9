"""Turn the INPUT arguments of ``scattermotion extract`` into a sorted list of things to extract.

An INPUT is one of:

- a **video file** (any container PyAV decodes): output folder ``<stem>``;
- a **folder**, searched recursively: every video in it becomes an item whose output folder mirrors its path
  relative to that folder without the extension (``UCF101/ApplyEyeMakeup/v_x.avi`` given ``UCF101`` ->
  ``ApplyEyeMakeup/v_x``), and every sub-folder holding images becomes a *frame folder* item the same way;
  a folder that itself holds images is one frame-folder item named after it;
- a **list file** (``.txt``, ``.lst``, ``.list``, ``.csv``): one video or frame folder per line, first
  whitespace- (or comma-) separated column only, so UCF101/HMDB51 split files work as they are; ``#``
  comments and blank lines are skipped. Relative entries are resolved against ``list_root`` (default: the
  list file's folder) and keep their relative path as output folder (class sub-folders kept), always
  inside the output folder (see :func:`list_output_folder`); a path with spaces is kept whole when a label
  column follows it.

Frame folders hold images sorted by natural order (``img_2`` before ``img_10``); which files are frames is
decided by :mod:`scattermotion.data.frame_folder` (the flow images of a denseflow / mmaction2 ``rawframes``
folder are left out, so such a folder can be given as it is). A path that does not exist is kept as a
video item: it fails when opened, with the other items unaffected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from scattermotion.data.frame_folder import has_frames
from scattermotion.data.video import open_video
from scattermotion.errors import InputError

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv"}
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list", ".csv"})


@dataclass(frozen=True)
class InputItem:
    """One video (or frame folder) to extract, and the output sub-folder it maps to."""

    source: Path
    kind: str  # "video" | "frames"
    rel: PurePosixPath  # output folder relative to --out, e.g. ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01

    @property
    def name(self) -> str:
        return str(self.rel)


# ---- expanding INPUT arguments ---------------------------------------------------------------------------


def expand_inputs(
    inputs: Sequence[str | os.PathLike], list_root: str | os.PathLike | None = None
) -> list[InputItem]:
    """All items named by ``inputs``, sorted by output folder (the deterministic order sharding relies on).

    Raises :class:`InputError` when two items would write to the same output folder, or when a folder or
    list file yields nothing (an empty or wrong folder is a mistake, not a finished job).
    """
    items: list[InputItem] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = list(_expand_folder(path, PurePosixPath()))
            if not found:
                raise InputError(path, "holds no videos and no frame images (searched recursively)")
        elif path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
            found = list(_expand_list(path, Path(list_root) if list_root is not None else path.parent))
            if not found:
                raise InputError(path, "list file names no videos or frame folders")
        else:
            found = [InputItem(path, "video", PurePosixPath(path.stem))]
        items.extend(found)
    return _sorted_unique(items)


def _expand_folder(root: Path, rel_base: PurePosixPath) -> Iterator[InputItem]:
    if has_frames(root):
        yield InputItem(root, "frames", rel_base if rel_base.parts else PurePosixPath(root.name))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel_dir = rel_base / PurePosixPath(*here.relative_to(root).parts)
        if here != root and has_frames(here):
            yield InputItem(here, "frames", rel_dir)
        for filename in sorted(filenames):
            if not filename.startswith(".") and Path(filename).suffix.lower() in VIDEO_EXTENSIONS:
                yield InputItem(here / filename, "video", rel_dir / Path(filename).stem)


def _expand_list(list_file: Path, root: Path) -> Iterator[InputItem]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(list_file, f"cannot read list file: {err}") from err
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry_path = Path(_list_entry(line, root)).expanduser()
        path = entry_path if entry_path.is_absolute() else root / entry_path
        rel = list_output_folder(entry_path, root)
        if path.is_dir():
            yield from _expand_folder(path, rel)
        else:
            yield InputItem(path, "video", rel.with_suffix("") if rel.suffix else rel)


def _list_entry(line: str, root: Path) -> str:
    """The path part of a list line: the longest prefix before a separator that exists (so a name with
    spaces survives a label column after it), else the first column."""
    if (root / line).expanduser().exists():
        return line
    for match in reversed(list(re.finditer(r"[\s,]+", line))):
        prefix = line[: match.start()]
        if prefix and (root / prefix).expanduser().exists():
            return prefix
    return re.split(r"[\s,]+", line)[0]


def list_output_folder(entry: Path, root: Path) -> PurePosixPath:
    """Where a list entry's outputs go, relative to ``--out``; never outside it.

    A relative entry keeps its path from the list's root (class folder included), with ``..`` resolved
    lexically and any ``..`` left at the front dropped (``../UCF/c/a1.mp4`` -> ``UCF/c/a1.mp4``), so a
    list cannot name a folder outside ``--out``. An absolute entry keeps its path below the root when it
    lies there, else only its name.
    """
    if entry.is_absolute():
        try:
            relative = Path(os.path.normpath(entry)).relative_to(os.path.normpath(root.absolute()))
        except ValueError:
            return PurePosixPath(entry.name)
        return PurePosixPath(relative.as_posix()) if relative.parts else PurePosixPath(entry.name)
    parts = [part for part in PurePosixPath(os.path.normpath(entry.as_posix())).parts if part != ".."]
    return PurePosixPath(*parts) if parts else PurePosixPath(Path(root).absolute().name)


def _sorted_unique(items: list[InputItem]) -> list[InputItem]:
    by_rel: dict[PurePosixPath, InputItem] = {}
    for item in items:
        other = by_rel.get(item.rel)
        if other is not None and other.source.resolve() != item.source.resolve():
            raise InputError(item.source, f"writes to the same output folder {item.rel} as {other.source}")
        by_rel[item.rel] = item
    return [by_rel[rel] for rel in sorted(by_rel, key=str)]


# ---- sharding --------------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise InputError(None, f"--shard {text!r}: expected i/N, e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise InputError(None, f"--shard {text!r}: need 0 <= i < N")
    return index, count


def shard_from_env(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` as set by torchrun, or None when not running under it."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        return parse_shard(f"{env['RANK']}/{env['WORLD_SIZE']}")
    except InputError as err:
        raise InputError(None, f"RANK/WORLD_SIZE environment: {err.problem}") from err


def shard_items(items: Sequence[InputItem], index: int, count: int) -> list[InputItem]:
    """Items ``index, index + count, ...`` of the sorted list: shards never overlap and together cover it."""
    return list(sorted(items, key=lambda item: str(item.rel))[index::count])


# ---- frame sizes -----------------------------------------------------------------------------------------


def parse_size(text: str, flag: str = "--resize") -> tuple[int, int]:
    """``"WxH"`` -> ``(W, H)``: every size option (``--resize``, ``--crop``, ``--size``, ``--sizes``) is
    width first; ``flag`` names the option in the error."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise InputError(None, f"{flag} {text!r}: expected WxH with positive integers, e.g. 340x256")
    return int(match.group(1)), int(match.group(2))


# ---- opening ---------------------------------------------------------------------------------------------


def open_source(item: InputItem, resize: tuple[int, int] | None = None, short_side: int | None = None):
    """A streaming frame source for ``item`` (:func:`scattermotion.data.video.open_video`, which reads a
    video file or a frame folder); sizes follow ``output_size``."""
    if item.kind == "frames" and not item.source.is_dir():
        raise InputError(
            item.source, "frame folder not found" if not item.source.exists() else "not a folder"
        )
    return open_video(item.source, resize=resize, short_side=short_side)
