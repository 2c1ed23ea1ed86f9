"""The demo runs on real fetched footage, and the CLI lists every verb."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from scattermotion.cli import app
from scattermotion.data.fetched import ensure_data, real_video
from scattermotion.demo import run_demo

VERBS = ("flow", "extract", "train", "evaluate", "benchmark", "action", "report", "export", "demo")


def test_demo_writes_a_decodable_side_by_side_video_and_a_strip(tmp_path):
    ensure_data()
    result = run_demo(tmp_path / "demo", source=real_video("tree"), frames=6, short_side=64, method="dis")
    assert result.pairs == 5 and result.pairs_per_second > 0
    with av.open(str(result.video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5
    height, width = frames[0].shape[:2]
    assert width == 2 * 86 and height == 64  # tree.avi is 320x240 -> 86x64, frame | motion
    # The right half is the colour-coded motion: not a copy of the frame, and not blank.
    assert np.abs(frames[0][:, width // 2 :].astype(int) - frames[0][:, : width // 2]).mean() > 10
    assert result.strip.exists() and result.strip.stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["demo_motion.mp4", "demo_strip.png"]


def test_help_lists_every_verb():
    out = CliRunner().invoke(app, ["--help"]).output
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb):
    result = CliRunner().invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_input_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "missing.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scattermotion.cli",
            "flow",
            str(missing),
            str(missing),
            "-o",
            str(tmp_path / "o.flo"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "missing.png" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
