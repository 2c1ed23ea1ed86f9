"""One exception type for bad user input, so every entry point can print a single clear line."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A file or argument the user gave cannot be used. ``str(err)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
