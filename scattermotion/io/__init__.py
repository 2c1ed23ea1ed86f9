"""Flow files (``.flo``, KITTI ``.png``, ``.npy``, TSN flow JPEGs), colour visualisation and MP4 output.

:func:`read_flow` / :func:`write_flow` pick the format from the file extension.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scattermotion.errors import InputError
from scattermotion.io.flo import read_flo, write_flo
from scattermotion.io.flow_jpeg import flow_to_uint8, read_flow_jpeg, uint8_to_flow, write_flow_jpeg
from scattermotion.io.kitti import read_kitti, write_kitti
from scattermotion.io.npy import read_npy, write_npy
from scattermotion.io.video_writer import Mp4Writer, side_by_side
from scattermotion.io.visualize import (
    color_wheel_legend,
    flow_to_color,
    make_strip,
    sequence_max_flow,
    write_jpeg,
    write_png,
)

FLOW_EXTENSIONS = (".flo", ".png", ".npy")


def read_flow(path: str | os.PathLike) -> np.ndarray:
    """Read H×W×2 float32 flow from ``.flo``, KITTI ``.png`` (invalid pixels NaN) or ``.npy``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".flo":
        return read_flo(path)
    if suffix == ".png":
        return read_kitti(path)[0]
    if suffix == ".npy":
        return read_npy(path)
    raise _unknown_type(path, suffix)


def write_flow(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write flow as ``.flo``, KITTI ``.png`` (NaN -> invalid) or ``.npy``, chosen by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".flo":
        write_flo(path, flow)
    elif suffix == ".png":
        write_kitti(path, flow)
    elif suffix == ".npy":
        write_npy(path, flow)
    else:
        raise _unknown_type(path, suffix)


def _unknown_type(path: str | os.PathLike, suffix: str) -> InputError:
    return InputError(path, f"unknown flow file type {suffix or '(none)'}; expected one of {FLOW_EXTENSIONS}")


__all__ = [
    "FLOW_EXTENSIONS",
    "Mp4Writer",
    "color_wheel_legend",
    "flow_to_color",
    "flow_to_uint8",
    "make_strip",
    "read_flo",
    "read_flow",
    "read_flow_jpeg",
    "read_kitti",
    "read_npy",
    "sequence_max_flow",
    "side_by_side",
    "uint8_to_flow",
    "write_flo",
    "write_flow",
    "write_flow_jpeg",
    "write_kitti",
    "write_npy",
    "write_jpeg",
    "write_png",
]
