"""scripts/compare_checkpoints.py: the validator training uses, applied to several checkpoints side by side
(tiny random models on two small synthetic clips; no footage, so no fetched data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tiny_models import save_tiny_weights

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_checkpoints.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_scores_each_checkpoint_against_the_first(tmp_path):
    config = tmp_path / "val.yaml"
    config.write_text(
        "clip_len: 3\nval_sets: [synthetic]\nval_synthetic_count: 2\nval_synthetic_size: [64, 80]"
    )
    first = save_tiny_weights(tmp_path / "a.safetensors")
    second = save_tiny_weights(tmp_path / "b.safetensors", seed=1)
    out = tmp_path / "rows.json"
    done = run(str(first), str(second), str(first), "--config", str(config), "--threads", "1",
               "--set", "test_time_backward=true", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = done.stdout.splitlines()[2:]  # after the header and its rule
    assert len(table) == 3 and table[0].endswith("| 1.000 |")
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["synthetic_epe"] == rows[2]["synthetic_epe"]  # the same weights score the same
    assert rows[0]["synthetic_epe"] != rows[1]["synthetic_epe"]
    assert json.loads(out.read_text())["settings"] == {"test_time_backward": True}


def test_videos_add_the_reconstruction_psnr_of_their_frame_pairs(tmp_path):
    import cv2
    import numpy as np

    config = tmp_path / "val.yaml"
    config.write_text(
        "clip_len: 3\nval_sets: [synthetic]\nval_synthetic_count: 1\nval_synthetic_size: [64, 80]"
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    texture = cv2.resize(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8), (128, 96))
    for t in range(8):  # a texture moving 1 px a frame
        cv2.imwrite(str(frames / f"{t:03d}.png"), np.roll(texture, t, axis=1)[:, 16:112])
    weights = save_tiny_weights(tmp_path / "a.safetensors")
    out = tmp_path / "rows.json"
    done = run(str(weights), str(weights), "--config", str(config), "--threads", "1", "--videos", str(frames),
               "--pairs-per-video", "2", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "reconstruction PSNR dB" in done.stdout.splitlines()[0]
    rows = json.loads(out.read_text())["rows"]
    assert (
        5 < rows[0]["reconstruction_psnr"] < 100
        and rows[0]["reconstruction_psnr"] == rows[1]["reconstruction_psnr"]
    )
    done = run(str(weights), "--config", str(config), "--videos", str(tmp_path / "missing"))
    assert done.returncode == 1 and "no such file" in done.stderr and "Traceback" not in done.stderr


def test_bad_checkpoints_and_settings_are_one_line_errors(tmp_path):
    config = tmp_path / "val.yaml"
    config.write_text("val_sets: [synthetic]\nval_synthetic_count: 1\n")
    for args, message in [
        ([str(tmp_path / "missing.safetensors")], "not a weights file or a training run folder"),
        ([f"{tmp_path}:x"], "whole number"),
        ([str(tmp_path)], "no checkpoint"),
        ([str(save_tiny_weights(tmp_path / "a.safetensors")), "--set", "channels=[8]"], "--set"),
    ]:
        done = run(*args, "--config", str(config), "--threads", "1")
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
