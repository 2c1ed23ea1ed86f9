"""The evaluation harness: metrics on a tiny synthetic set and on tiny fixture folders in every standard
dataset layout (built here), reconstruction on a frame folder, several methods in one run, JSON and
Markdown outputs, and one-line errors for bad input.

The fixtures move a texture by a known whole-pixel shift, so zero motion must score exactly |shift| and a
real method (DIS) must come close to the shift."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import save_tiny_weights
from typer.testing import CliRunner

from scattermotion import cli
from scattermotion.cli import app
from scattermotion.clipsets import Clip, ClipSet, detect_layout, resolve_set, spread_indices
from scattermotion.data.flowsets import FlowSample
from scattermotion.data.synthetic import SyntheticClips
from scattermotion.errors import InputError
from scattermotion.evaluate import evaluate_set, run_evaluation, split_list, to_markdown, write_report
from scattermotion.io import write_flo, write_kitti
from scattermotion.methods import build_estimators

SHIFT = (3, 2)  # (u, v) px
HEIGHT, WIDTH = 64, 96


pytestmark = pytest.mark.usefixtures("single_thread")


def texture(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).round().astype(np.uint8)


def shifted_pair(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frame2 = frame1 moved by SHIFT; ground truth SHIFT where the pixel stays in view, NaN elsewhere."""
    u, v = SHIFT
    frame1 = texture(seed)
    frame2 = np.roll(frame1, shift=(v, u), axis=(0, 1))
    flow = np.empty((HEIGHT, WIDTH, 2), np.float32)
    flow[...] = (u, v)
    flow[HEIGHT - v :] = np.nan
    flow[:, WIDTH - u :] = np.nan
    return frame1, frame2, flow


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def make_layout(root: Path, layout: str, count: int = 2) -> Path:
    """A tiny dataset of ``count`` shifted pairs in a standard layout."""
    for i in range(count):
        frame1, frame2, flow = shifted_pair(i)
        if layout == "middlebury":
            seq = f"Seq{i}"
            write_rgb(root / "other-data" / seq / "frame10.png", frame1)
            write_rgb(root / "other-data" / seq / "frame11.png", frame2)
            (root / "other-gt-flow" / seq).mkdir(parents=True, exist_ok=True)
            write_flo(root / "other-gt-flow" / seq / "flow10.flo", flow)
        elif layout == "sintel":
            write_rgb(root / "training" / "clean" / "alley" / f"frame_{2 * i + 1:04d}.png", frame1)
            write_rgb(root / "training" / "clean" / "alley" / f"frame_{2 * i + 2:04d}.png", frame2)
            (root / "training" / "flow" / "alley").mkdir(parents=True, exist_ok=True)
            write_flo(root / "training" / "flow" / "alley" / f"frame_{2 * i + 1:04d}.flo", flow)
        elif layout == "kitti":
            write_rgb(root / "training" / "image_2" / f"{i:06d}_10.png", frame1)
            write_rgb(root / "training" / "image_2" / f"{i:06d}_11.png", frame2)
            (root / "training" / "flow_occ").mkdir(parents=True, exist_ok=True)
            write_kitti(root / "training" / "flow_occ" / f"{i:06d}_10.png", flow)
        elif layout == "flyingchairs":
            write_rgb(root / "data" / f"{i + 1:05d}_img1.ppm", frame1)
            write_rgb(root / "data" / f"{i + 1:05d}_img2.ppm", frame2)
            write_flo(root / "data" / f"{i + 1:05d}_flow.flo", flow)
    return root


def make_frame_folder(root: Path, frames: int = 4) -> Path:
    """Frames of a texture panning SHIFT px per frame (frame i+1 = frame i moved by SHIFT)."""
    base = texture(7, HEIGHT + 20, WIDTH + 20)
    u, v = SHIFT
    for i in range(frames):
        y0, x0 = 10 - i * v, 10 - i * u  # the window moves back, so the content moves by +SHIFT
        crop = base[y0 : y0 + HEIGHT, x0 : x0 + WIDTH]
        write_rgb(root / f"img_{i:05d}.png", crop)
    return root


def tiny_weights(path: Path) -> Path:
    return save_tiny_weights(path)


def zero_epe(flow: np.ndarray) -> float:
    known = np.isfinite(flow).all(axis=2)
    return float(np.linalg.norm(flow[known], axis=1).mean())


# ---- layouts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["middlebury", "sintel", "kitti", "flyingchairs"])
def test_every_standard_layout_is_detected_and_scored(tmp_path, layout):
    root = make_layout(tmp_path / layout, layout)
    assert detect_layout(root)[0] == layout
    report = run_evaluation([str(root)], ["zero", "dis"])
    (info,) = report["sets"]
    assert info["kind"] == "flow" and info["pairs"] == 2 and info["size"] == f"{WIDTH}x{HEIGHT}"
    results = {r["method"]: r for r in report["results"]}
    # Zero motion misses every pixel by exactly |SHIFT| (KITTI stores 1/64 px: exact for whole pixels).
    assert results["zero"]["metrics"]["epe"] == pytest.approx(math.hypot(*SHIFT), abs=1e-4)
    assert results["zero"]["metrics"]["acc_1px"] == 0.0
    assert results["zero"]["metrics"]["fl_all"] == 1.0
    assert results["dis"]["metrics"]["epe"] < 0.5
    assert results["dis"]["metrics"]["acc_3px"] > 0.9
    assert results["dis"]["pairs"] == 2 and len(results["dis"]["samples"]) == 2
    assert results["dis"]["ms_per_pair"] > 0


def test_limit_spreads_the_kept_samples(tmp_path):
    root = make_layout(tmp_path / "mb", "middlebury", count=5)
    eval_set = resolve_set(str(root), limit=2)
    assert [c.name for c in eval_set.clips] == ["Seq0", "Seq4"]
    assert spread_indices(10, 3) == [0, 4, 9] or spread_indices(10, 3) == [0, 5, 9]
    assert spread_indices(3, None) == [0, 1, 2] and spread_indices(3, 10) == [0, 1, 2]


# ---- synthetic set and our network ------------------------------------------------------------------------


def test_tiny_synthetic_set_with_ours_and_baselines(tmp_path):
    clips = SyntheticClips(seed=5, count=2, size=(64, 64), clip_len=2, kind="sprites", max_disp=4.0)
    samples = [
        FlowSample(f"s{i}", c.frames[0], c.frames[1], c.flows[0], c.occluded[0]) for i, c in enumerate(clips)
    ]
    eval_set = ClipSet("tiny-sprites", "test", [Clip.from_sample(s) for s in samples], has_ground_truth=True)
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    estimators = build_estimators(["ours", "zero", "dis"], weights=weights)
    info, results = evaluate_set(eval_set, estimators)
    by_method = {r["method"]: r for r in results}
    assert list(by_method) == ["ours", "zero", "dis"]
    expected_zero = np.mean([zero_epe(s.flow) for s in samples])
    assert by_method["zero"]["metrics"]["epe"] == pytest.approx(expected_zero, rel=1e-6)
    assert info["mean_motion_px"] == pytest.approx(expected_zero, rel=1e-6)
    for result in results:
        metrics = result["metrics"]
        assert {"epe", "epe_noc", "epe_occ", "epe_boundary", "acc_1px", "fl_all"} <= set(metrics)
        assert math.isfinite(metrics["epe"]) and math.isfinite(metrics["epe_noc"])
        assert result["pairs"] == 2
    assert by_method["dis"]["metrics"]["epe"] < by_method["zero"]["metrics"]["epe"]


# ---- the verb: several methods, several sets, files --------------------------------------------------------


def test_cli_several_methods_and_sets_write_json_and_markdown(tmp_path):
    dataset = make_layout(tmp_path / "mb", "middlebury")
    frames = make_frame_folder(tmp_path / "frames")
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    json_path, md_path = tmp_path / "out" / "eval.json", tmp_path / "out" / "eval.md"
    args = [
        "evaluate",
        "--data",
        f"{dataset}",
        "--data",
        str(frames),
        "--method",
        "zero,dis",
        "--method",
        "ours",
    ]
    args += ["--weights", str(weights), "--json", str(json_path), "--markdown", str(md_path), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # Standard JSON: NaN would be written as a bare NaN token, which a strict parser rejects.
    report = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert [m["name"] for m in report["methods"]] == ["zero", "dis", "ours"]
    assert [s["kind"] for s in report["sets"]] == ["flow", "reconstruction"]
    assert len(report["results"]) == 6
    recon = {r["method"]: r["metrics"] for r in report["results"] if r["set"] == "frames"}
    # The pan is recovered by DIS: its reconstruction is far better than assuming no motion.
    assert recon["dis"]["psnr"] > recon["zero"]["psnr"] + 5
    assert 0 < recon["zero"]["ssim"] < recon["dis"]["ssim"] <= 1
    assert report["sets"][1]["pairs"] == 3
    markdown = md_path.read_text()
    assert markdown == to_markdown(report)
    assert "| mb [middlebury] |" in markdown and "ours (tiny.safetensors)" in markdown
    assert "PSNR dB" in markdown and "EPE" in markdown
    assert markdown.strip() in result.output
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_write_report_is_atomic_and_replaces(tmp_path):
    report = run_evaluation([str(make_layout(tmp_path / "mb", "middlebury", 1))], ["zero"])
    path = tmp_path / "r.json"
    path.write_text("old")
    write_report(report, path)
    assert json.loads(path.read_text())["results"][0]["method"] == "zero"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["r.json"]


# ---- bad input ---------------------------------------------------------------------------------------------


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["scattermotion", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def test_bad_folder_is_one_line_error(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "not_a_dataset"
    (bad / "stuff").mkdir(parents=True)
    (bad / "notes.txt").write_text("hello")
    code, err = run_main(monkeypatch, capsys, "evaluate", "--data", str(bad), "--method", "dis")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: not a known dataset layout")
    assert "Traceback" not in err


def test_layout_without_samples_and_unknown_names_fail_clearly(tmp_path, monkeypatch, capsys):
    kitti = tmp_path / "kitti"
    (kitti / "training" / "flow_occ").mkdir(parents=True)
    with pytest.raises(InputError, match="no samples found"):
        resolve_set(str(kitti))
    sintel = make_layout(tmp_path / "sintel", "sintel", count=1)
    with pytest.raises(InputError, match="clean' or 'final"):
        resolve_set(str(sintel), sintel_pass="dirty")
    code, err = run_main(monkeypatch, capsys, "evaluate", "--data", "no-such-set", "--method", "zero")
    assert code == 1 and "not a built-in set" in err and err.count("\n") == 1
    code, err = run_main(monkeypatch, capsys, "evaluate", "--data", "motorcycle", "--method", "raft")
    assert code == 1 and "unknown method 'raft'" in err
    with pytest.raises(InputError, match="--weights applies"):
        build_estimators(["dis"], weights=tmp_path / "w.safetensors")


def test_split_list_keeps_order_and_paths(tmp_path):
    odd = tmp_path / "a,b"
    odd.mkdir()
    assert split_list(["ours,dis", "tvl1", "dis"]) == ["ours", "dis", "tvl1"]
    assert split_list([str(odd), "zero"]) == [str(odd), "zero"]


def test_real_video_by_name_is_bounded_and_cut_aware():
    eval_set = resolve_set("bikes", limit=40)  # bikes.mp4 has a scene cut at frame 30
    assert eval_set.kind == "reconstruction"
    assert [len(c.frames) for c in eval_set.clips] == [30, 11]
    assert eval_set.pair_count == 39 and "30" in eval_set.notes[0]


def test_cli_skips_a_bad_set_like_every_batch_verb(tmp_path, monkeypatch, capsys):
    """``--data good,bad`` used to abort the whole run; a --json path that is a folder was a traceback
    after all the work. Now the folder is refused first, the bad set is skipped and listed (exit 1) and
    the good one is scored and written."""
    frames = make_frame_folder(tmp_path / "frames")
    missing = tmp_path / "missing.mp4"
    (tmp_path / "dir.json").mkdir()
    base = ["scattermotion", "evaluate", "-m", "dis", "-q"]
    monkeypatch.setattr(
        sys, "argv", [*base, "--data", f"{frames},{missing}", "--json", str(tmp_path / "dir.json")]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'dir.json'}: cannot write: is a folder"
    json_path = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", [*base, "--data", f"{frames},{missing}", "--json", str(json_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and f"{missing}: no such file" in captured.err
    report = json.loads(json_path.read_text())
    assert [s["name"] for s in report["sets"]] == ["frames"]
    assert [f["data"] for f in report["failures"]] == [str(missing)]
    assert "| frames |" in captured.out and "skipped" in captured.out
