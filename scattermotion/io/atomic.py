"""Atomic file output: write beside the target under a temporary name, then ``os.replace`` it into place.

A reader never sees a half-written file, and a crash or exception leaves the old file (or none) behind.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scattermotion.errors import InputError


def temp_path_beside(path: str | os.PathLike) -> Path:
    """Create an empty, uniquely named file in the folder of ``path`` and return its path.

    The temporary name keeps the target's suffix, so libraries that pick a format by extension still work.
    It is created with mode 0o666 minus the umask (unlike ``mkstemp``'s 0o600), so the final file has the
    same permissions as one written directly.
    """
    target = Path(path)
    for _ in range(100):
        temp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as err:
            raise InputError(target, f"cannot write: {err.strerror or err}") from err
        os.close(fd)
        return temp
    raise InputError(target, "cannot write: no free temporary name in its folder")


def commit(temp: Path, path: str | os.PathLike) -> None:
    """Move a finished temporary file onto its target (atomic on POSIX within one file system);
    ``InputError`` naming the target when it cannot be replaced (a folder stands there, say)."""
    try:
        os.replace(temp, path)
    except OSError as err:
        problem = "is a folder" if os.path.isdir(path) else (err.strerror or str(err))
        raise InputError(path, f"cannot write: {problem}") from err


def check_output_file(path: str | os.PathLike, make_parents: bool = False) -> Path:
    """Check, before any work, that a file can be written at ``path`` later: not a folder, its folder
    there (or created with ``make_parents``) and writable. Leaves nothing behind; ``InputError`` if not."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "cannot write: is a folder")
    if make_parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(path, f"cannot create its folder: {err.strerror or err}") from None
    discard(temp_path_beside(path))  # the honest test: a file can be created there
    return path


def discard(temp: Path) -> None:
    """Remove a temporary file after a failure; a missing file is fine."""
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``, on an exception it is removed."""
    temp = temp_path_beside(path)
    try:
        yield temp
    except BaseException:
        discard(temp)
        raise
    try:
        commit(temp, path)
    except BaseException:
        discard(temp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as temp:
        temp.write_bytes(data)


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: NaN and infinities become None (JSON has no NaN; ``json.dumps`` would
    write a ``NaN`` token other readers reject), NumPy scalars and arrays become numbers and lists, tuples
    become lists."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # NumPy scalars and arrays
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(
    path: str | os.PathLike,
    value: Any,
    indent: int | None = 1,
    sort_keys: bool = False,
    make_parents: bool = False,
    default: Any = None,
) -> None:
    """Write ``value`` as JSON to ``path`` atomically (never a partial file), NaN and infinities as null.

    The text is built before anything is written, so a value JSON cannot hold (and ``default`` does not turn
    into something it can) raises ``TypeError`` with nothing left behind. ``make_parents`` creates the
    folder first."""
    text = json.dumps(json_safe(value), indent=indent, sort_keys=sort_keys, allow_nan=False, default=default)
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (text + "\n").encode())
