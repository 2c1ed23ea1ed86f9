"""The training loop: YAML configs, the lr schedule, checkpoints (atomic, rotated, weights_only state),
exact resume after a kill, logs (metrics.jsonl, TensorBoard), the model card, the CLI verb, and two-process
DistributedDataParallel training with sharded data. Everything runs the tiny config on 64-px crops."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from scattermotion.cli import app
from scattermotion.data.fetched import ensure_data, real_video
from scattermotion.errors import InputError
from scattermotion.model import load_weights
from scattermotion.training import (
    TrainConfig,
    latest_checkpoint,
    list_checkpoints,
    load_config,
    lr_factor,
    train,
    weights_hash,
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
LOSS_KEYS = ("loss", "photo_s1", "smooth_s1", "photo_s16", "grad_norm", "lr")


def tiny_config(**changes) -> TrainConfig:
    return load_config(TINY).replace(sources=[str(real_video("carphone"))], **changes)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(rows: list[dict]) -> list[tuple]:
    """Loss curves and validation results, without the wall-clock fields (throughput, time)."""
    out = []
    for row in rows:
        keys = LOSS_KEYS if row["kind"] == "train" else tuple(k for k in row if k not in ("kind", "step"))
        out.append((row["kind"], row["step"], tuple(row[k] for k in keys)))
    return out


# ---- config and schedule -----------------------------------------------------------------------------------


def test_shipped_configs_load_and_bad_configs_name_the_file(tmp_path):
    default = load_config(REPO / "configs" / "default.yaml")
    assert default.model == "small" and default.motion_config().clip_len == default.clip_len
    assert load_config(TINY).crop_size == (64, 64)
    for path in sorted((REPO / "configs").glob("*.yaml")):  # every shipped recipe, its model overrides too
        load_config(path).motion_config()
    assert load_config(REPO / "configs" / "coarse_passes_6.yaml").motion_config().refine_iterations == (6, 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 4\n")
    with pytest.raises(InputError, match="batch_sise") as err:
        load_config(bad)
    assert str(bad) in str(err.value)
    bad.write_text("crop_size: [60, 64]\n")
    with pytest.raises(InputError, match="multiples of the network stride"):
        load_config(bad)
    bad.write_text("augment: {hflip: 2}\n")
    with pytest.raises(InputError, match="hflip"):
        load_config(bad)


def test_occlusion_masking_starts_at_its_step():
    config = TrainConfig(loss={"occlusion": True, "smooth_weight": 0.1}, occlusion_from_step=100)
    assert not config.loss_config(99).occlusion and config.loss_config(100).occlusion
    assert config.loss_config().occlusion and config.loss_config(0).smooth_weight == 0.1


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_lr_schedule_warms_up_then_decays_to_the_floor(schedule):
    config = TrainConfig(schedule=schedule, steps=1000, warmup_steps=100, min_lr_ratio=0.01)
    factors = [lr_factor(s, config) for s in range(1000)]
    assert factors[0] < 0.05 and factors[99] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:99], factors[1:100], strict=True))
    assert all(a >= b for a, b in zip(factors[100:-1], factors[101:], strict=True))
    assert factors[-1] == pytest.approx(0.01, abs=0.002)


# ---- the loop: resume, checkpoints, logs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    ensure_data()
    run_dir = tmp_path_factory.mktemp("runs") / "straight"
    result = train(tiny_config(), run_dir, progress=False)
    assert result.step == 6 and result.final_weights == run_dir / "final.safetensors"
    return run_dir


def test_killed_run_resumes_exactly(uninterrupted, tmp_path):
    """6 steps straight == killed after step 4 (last checkpoint at 3) + --resume, with other data workers."""
    run_dir = tmp_path / "killed"
    killed = train(tiny_config(), run_dir, progress=False, stop_at=4)
    assert killed.final_weights is None and not (run_dir / "final.safetensors").exists()
    assert list_checkpoints(run_dir) == [3] and latest_checkpoint(run_dir) == 3
    assert max(row["step"] for row in read_metrics(run_dir)) == 4  # logged past the checkpoint

    train(tiny_config(num_workers=1), run_dir, resume=True, progress=False)
    expected, got = read_metrics(uninterrupted), read_metrics(run_dir)
    assert [(r["kind"], r["step"]) for r in got] == [(r["kind"], r["step"]) for r in expected]
    for (kind, step, want), (_, _, have) in zip(comparable(expected), comparable(got), strict=True):
        assert have == pytest.approx(want, rel=1e-6, abs=1e-9), (kind, step)
    first, second = load_file(uninterrupted / "final.safetensors"), load_file(run_dir / "final.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=1e-6)
    # The loss really changes along the run (the comparison above is not between constants).
    losses = [r["loss"] for r in expected if r["kind"] == "train"]
    assert len(set(losses)) == len(losses)


def test_checkpoints_rotate_and_the_state_loads_weights_only(uninterrupted):
    folder = uninterrupted / "checkpoints"
    assert list_checkpoints(uninterrupted) == [3, 6]  # keep_checkpoints: 2 (steps 3 and 6 of 6)
    assert (folder / "latest").read_text().strip() == "step_00000006"
    assert not list(folder.glob(".*tmp*"))  # no temporary files left behind
    state = torch.load(folder / "step_00000006.state.pt", weights_only=True)
    assert state["step"] == 6 and state["samples_seen"] == 12
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    final = load_weights(uninterrupted / "final.safetensors")
    checkpoint = load_weights(folder / "step_00000006.safetensors")
    assert weights_hash(final) == weights_hash(checkpoint)
    card = json.loads((uninterrupted / "final.json").read_text())
    assert card["training"]["steps"] == 6
    assert card["training"]["data_sources"] == [str(real_video("carphone"))]
    assert card["metrics"]["synthetic_epe"] > 0 and card["config"]["clip_len"] == 3


def test_logs_hold_every_loss_term_and_validation(uninterrupted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = read_metrics(uninterrupted)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["clips_per_s"] > 0 and r["lr"] > 0 for r in train_rows)
    assert [r["step"] for r in rows if r["kind"] == "val"] == [3, 6]
    events = EventAccumulator(str(uninterrupted / "tb"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/photo_s1", "train/smooth_s4", "train/lr", "train/clips_per_s"} <= scalars
    assert {"val/synthetic_epe", "val/real_loss", "val/real_photo_s1"} <= scalars
    assert {"train/motion", "val/synthetic"} <= set(events.Tags()["images"])


def test_refuses_to_overwrite_or_change_a_run(uninterrupted):
    with pytest.raises(InputError, match="--resume"):
        train(tiny_config(), uninterrupted, progress=False)
    with pytest.raises(InputError, match="lr"):
        train(tiny_config(lr=0.5), uninterrupted, resume=True, progress=False)


# ---- CLI ---------------------------------------------------------------------------------------------------


def test_cli_trains_from_a_list_file_with_synthetic_clips(tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{real_video('carphone')}\n{real_video('tree')}\n")
    run_dir = tmp_path / "run"
    common = ["--config", str(TINY), "--no-progress"]
    args = ["train", str(listing), "--out", str(run_dir), *common, "--steps", "2"]
    result = CliRunner().invoke(app, [*args, "--synthetic-ratio", "0.5", "--supervised-weight", "0.1"])
    assert result.exit_code == 0, result.output
    assert "weights: " in result.output and (run_dir / "final.safetensors").is_file()
    rows = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert all("supervised_epe" in r for r in rows)
    card = json.loads((run_dir / "final.json").read_text())
    assert sorted(Path(v).name for v in card["training"]["videos"]) == ["carphone_pristine.mp4", "tree.avi"]
    # Without the option the loss is purely self-supervised.
    plain = CliRunner().invoke(
        app, ["train", str(listing), "--out", str(tmp_path / "p"), *common, "--steps", "1"]
    )
    assert plain.exit_code == 0, plain.output
    assert "supervised_epe" not in read_metrics(tmp_path / "p")[0]


def test_a_fine_tuned_run_keeps_the_history_of_its_start_weights(uninterrupted, tmp_path):
    """The --init weights' card is copied when the run starts, so overwriting it later (packaging the result
    over the default it started from) cannot drop the earlier stages from the new card or the package; and
    --resume needs only the run folder, not the --init file."""
    start = tmp_path / "start.safetensors"
    start.write_bytes((uninterrupted / "final.safetensors").read_bytes())
    (tmp_path / "start.json").write_text((uninterrupted / "final.json").read_text())
    first_record = json.loads((tmp_path / "start.json").read_text())["training"]
    run_dir = tmp_path / "tuned"
    train(tiny_config(init_weights=str(start), steps=4), run_dir, progress=False, stop_at=4)
    (tmp_path / "start.json").write_text(json.dumps({"training": {"steps": "overwritten"}}))
    start.unlink()  # a fresh machine resumes without the start weights: the checkpoint is enough
    train(tiny_config(init_weights=str(start), steps=4), run_dir, resume=True, progress=False)
    card = json.loads((run_dir / "final.json").read_text())
    assert card["training"]["initialised_from"] == json.loads(json.dumps(first_record))
    assert card["training"]["initialised_from"]["steps"] == 6

    out = tmp_path / "packaged.safetensors"
    packaged = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "package_default_model.py"), str(run_dir), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert packaged.returncode == 0, packaged.stderr
    assert json.loads(out.with_suffix(".json").read_text())["training"]["initialised_from"]["steps"] == 6

    # --set: inference-only fields change the stored config, never the tensors; anything else is refused.
    package = [sys.executable, str(REPO / "scripts" / "package_default_model.py"), str(run_dir)]
    fused = tmp_path / "fused.safetensors"
    settings = ["--set", "test_time_backward=true", "--set", "refine_iterations=[3, 2]"]
    done = subprocess.run([*package, "--out", str(fused), *settings], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    plain, changed = load_weights(out), load_weights(fused)
    assert (changed.config.test_time_backward, changed.config.refine_iterations) == (True, (3, 2))
    assert not plain.config.test_time_backward
    for name, tensor in plain.state_dict().items():
        assert torch.equal(changed.state_dict()[name], tensor)
    assert json.loads(fused.with_suffix(".json").read_text())["inference_settings"] == {
        "test_time_backward": True,
        "refine_iterations": [3, 2],
    }
    refused = subprocess.run(
        [*package, "--out", str(fused), "--set", "channels=[8,8,8,8]"], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "--set" in refused.stderr and "Traceback" not in refused.stderr


def test_model_overrides_grow_the_init_weights_by_a_finer_level(uninterrupted, tmp_path):
    """--init with model_overrides: the stored network with the change applied; what fits is loaded."""
    start = uninterrupted / "final.safetensors"
    overrides = {**load_config(TINY).model_overrides, "output_stride": 2}
    config = tiny_config(
        init_weights=str(start), model_overrides=overrides, loss={"level_weights": [0.25, 0.5, 0.75, 0.9]}
    )
    train(config.replace(steps=2), tmp_path / "grown", progress=False)
    grown = load_weights(tmp_path / "grown" / "final.safetensors")
    assert grown.config.output_stride == 2 and "refiners.2.logits.weight" in grown.state_dict()
    assert "photo_s2" in read_metrics(tmp_path / "grown")[0]  # the new level is trained


# ---- distributed -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_ends_with_identical_weights_and_different_data(tmp_path):
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", "2", "--master_port", str(_free_port()),
        "-m", "scattermotion.cli", "train", str(real_video("carphone")), "--out", str(run_dir),
        "--config", str(TINY), "--steps", "3", "--no-progress", "--debug-dump",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [json.loads((run_dir / "debug" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert weights_hash(load_weights(run_dir / "final.safetensors")) == ranks[0]["weights_sha256"]
    assert len(ranks[0]["batch_hashes"]) == 3
    assert not set(ranks[0]["batch_hashes"]) & set(ranks[1]["batch_hashes"])  # each rank saw its own clips
    assert list_checkpoints(run_dir) == [3]
    card = json.loads((run_dir / "final.json").read_text())
    assert card["training"]["world_size"] == 2
