"""Action recognition training: the compact TSN learns the generated benchmark from DIS motion, saved
classifiers give the same scores, late fusion, our motion through the loader, end-to-end fine-tuning of the
motion network, the backbones, and the ``scattermotion action`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_weights
from typer.testing import CliRunner

from scattermotion.action.datasets import load_ucf101
from scattermotion.action.engine import (
    TrainOptions,
    accuracy,
    fuse,
    load_action_model,
    predict,
    save_action_model,
    train_action,
)
from scattermotion.action.model import TSN, ClassifierConfig
from scattermotion.action.motionbench import BenchSettings, make_motion_bench
from scattermotion.action.sources import cache_key, make_source, parse_source
from scattermotion.cli import app
from scattermotion.errors import InputError
from scattermotion.model import load_weights

PANS = BenchSettings(
    per_class=8, test_per_class=4, frames=8, width=48, height=48, seed=1,
    classes=("pan-left", "pan-right", "pan-up", "pan-down"),
)  # fmt: skip
SMALL = dict(segments=2, test_segments=3, length=3, width=16, batch_size=8)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def pans(tmp_path_factory) -> Path:
    return make_motion_bench(tmp_path_factory.mktemp("bench") / "pans", PANS).path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors", clip_len=4)


def test_compact_tsn_learns_pan_directions_from_dis_and_fuses_with_rgb(pans, tmp_path):
    train, test = load_ucf101(pans, "train"), load_ucf101(pans, "test")
    cache = tmp_path / "cache"
    model, history = train_action(train, parse_source("dis"), TrainOptions(epochs=15, **SMALL), cache)
    assert history.extraction.clips == len(train) and history.extraction.pairs == len(train) * 7
    scores = predict(model, test, cache_dir=cache)
    assert scores.shape == (16, 4) and np.allclose(scores.sum(axis=1), 1.0)
    assert accuracy(scores, test.labels()) >= 0.75  # chance: 0.25

    path = save_action_model(model, tmp_path / "dis" / "model.safetensors", card={"note": "test"})
    loaded = load_action_model(path.parent)  # a run folder works too
    assert loaded.classes == list(PANS.classes) and loaded.source.kind == "dis" and loaded.length == 3
    np.testing.assert_allclose(predict(loaded, test, cache_dir=cache), scores, atol=1e-6)

    rgb, _ = train_action(train, parse_source("rgb"), TrainOptions(epochs=1, **{**SMALL, "length": 1}))
    rgb_scores = predict(rgb, test)
    fused = fuse([scores, rgb_scores], [1.5, 1.0])
    np.testing.assert_allclose(fused, (1.5 * scores + rgb_scores) / 2.5, atol=1e-9)
    with pytest.raises(InputError, match="classes differ"):
        predict(model, replace(test, classes=test.classes[::-1]), cache_dir=cache)


def test_fusion_and_accuracy_arithmetic():
    motion = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    rgb = np.array([[0.3, 0.7], [0.9, 0.1], [0.0, 1.0]])
    assert accuracy(motion, [0, 1, 1]) == pytest.approx(2 / 3)
    fused = fuse([motion, rgb], [3.0, 1.0])
    assert np.argmax(fused, axis=1).tolist() == [0, 1, 1]  # RGB breaks the motion tie of the last video
    assert accuracy(fused, [0, 1, 1]) == 1.0
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    with pytest.raises(ValueError):
        fuse([motion, rgb[:2]], [1.0, 1.0])
    with pytest.raises(InputError):
        fuse([motion, rgb], [-1.0, 1.0])


def test_our_motion_through_the_same_loader(pans, tiny_weights, tmp_path):
    train = load_ucf101(pans, "train")
    spec = parse_source("ours", weights=tiny_weights)
    assert cache_key(spec).startswith("ours-") and cache_key(spec) != cache_key(parse_source("dis"))
    source = make_source(spec, tmp_path / "cache")
    stats = source.prepare(train.records[:2])
    assert stats.computed == 2 and stats.pairs == 14
    maps = source.read(train.records[0], [0, 3])
    assert maps.shape == (2, 48, 48, 2) and np.all(np.abs(maps) <= 1.0)
    # a classifier trained on cached ours reads the same motion as a pre-extracted folder
    subset = load_ucf101(pans, "train")
    subset.records = subset.records[::4]
    model, _ = train_action(subset, spec, TrainOptions(epochs=1, **SMALL), tmp_path / "cache")
    cached = predict(model, subset, cache_dir=tmp_path / "cache")
    pre = parse_source(f"precomputed:{tmp_path / 'cache' / cache_key(spec)}")
    np.testing.assert_allclose(predict(model, subset, source=pre), cached, atol=1e-6)


def test_end_to_end_fine_tunes_the_motion_network(pans, tiny_weights, tmp_path):
    subset = load_ucf101(pans, "train")
    subset.records = subset.records[::4]  # 8 clips
    original = {k: v.clone() for k, v in load_weights(tiny_weights).state_dict().items()}
    options = TrainOptions(epochs=1, end_to_end=True, lr=1e-2, segments=1, test_segments=1, length=2,
                           width=8, batch_size=4)  # fmt: skip
    model, _ = train_action(subset, parse_source("ours", weights=tiny_weights), options)
    tuned = model.network.motion_net.state_dict()
    assert any(not torch.equal(original[k], tuned[k].cpu()) for k in original)  # gradients reached it
    scores = predict(model, subset)
    path = save_action_model(model, tmp_path / "e2e.safetensors")
    loaded = load_action_model(path)
    assert loaded.end_to_end and loaded.length == 2
    np.testing.assert_allclose(predict(loaded, subset), scores, atol=1e-5)
    with pytest.raises(InputError, match="use source ours, not dis"):
        train_action(subset, parse_source("dis"), TrainOptions(epochs=1, end_to_end=True))


def test_backbones_and_segment_consensus():
    x = torch.randn(2, 3, 10, 32, 32)
    tsn = TSN(ClassifierConfig(10, 5, width=8)).eval()
    with torch.no_grad():
        per_segment = tsn.fc(tsn.backbone(x.flatten(0, 1))).view(2, 3, 5)
        np.testing.assert_allclose(tsn(x).numpy(), per_segment.mean(dim=1).numpy(), atol=1e-5)
    assert TSN(ClassifierConfig(10, 5, backbone="resnet18", width=8))(x).shape == (2, 5)
    assert TSN(ClassifierConfig(10, 5, backbone="resnet50", width=4))(x).shape == (2, 5)
    custom = TSN(ClassifierConfig(10, 5, backbone="torch.nn:Identity"))  # any importable factory
    assert custom.backbone.out_features == 10 and custom(x).shape == (2, 5)
    with pytest.raises(InputError, match="unknown backbone"):
        ClassifierConfig(10, 5, backbone="vgg")
    with pytest.raises(InputError, match="cannot import"):
        TSN(ClassifierConfig(10, 5, backbone="no_such_module:net"))


def test_cli_make_bench_train_eval_and_fusion(tmp_path):
    runner = CliRunner()
    bench = tmp_path / "bench"
    made = runner.invoke(app, ["action", "make-bench", "--out", str(bench), "--per-class", "2",
                               "--test-per-class", "1", "--frames", "6", "--size", "32x32",
                               "--classes", "pan-left,pan-right"])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "6 clips, 2 classes" in made.output
    common = ["--epochs", "1", "--segments", "1", "--test-segments", "2", "--width", "8", "--batch-size", "2",
              "--cache", str(tmp_path / "cache")]  # fmt: skip
    for source, run in (("dis", "flow"), ("rgb", "rgb")):
        length = "2" if source == "dis" else "1"
        result = runner.invoke(app, ["action", "train", str(bench), "--source", source, "--out",
                                     str(tmp_path / run), "--length", length, *common])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "test accuracy" in result.output and (tmp_path / run / "model.safetensors").is_file()
        card = json.loads((tmp_path / run / "model.json").read_text())
        assert card["test"]["videos"] == 2 and card["layout"] == "ucf101"
    result = runner.invoke(app, ["action", "eval", str(bench), "-m", str(tmp_path / "flow"), "-m",
                                 str(tmp_path / "rgb"), "--cache", str(tmp_path / "cache"), "--json",
                                 str(tmp_path / "eval.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fusion" in result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [s["source"] for s in report["streams"]] == ["dis", "rgb"] and report["fusion"]["weights"] == [
        1.5,
        1,
    ]


def test_cli_bad_input_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "scattermotion.cli", "action", "train", str(tmp_path / "missing"), "--out",
         str(tmp_path / "run"), "--source", "dis"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "missing: dataset folder not found" in proc.stderr


def test_classifier_with_incomplete_or_hostile_metadata_is_one_input_error(tmp_path):
    """Metadata is parsed field by field into one InputError (a missing key was a KeyError traceback),
    and the network it describes is checked on the meta device before anything is allocated."""
    from safetensors.torch import save_file

    from scattermotion.action.engine import FORMAT

    tsn = TSN(ClassifierConfig(in_channels=4, num_classes=3, width=8))
    tensors = {k: v.contiguous() for k, v in tsn.state_dict().items()}
    full = {
        "format": FORMAT,
        "classifier": tsn.config.to_json(),
        "classes": json.dumps(["a", "b", "c"]),
        "source": json.dumps({"kind": "dis"}),
        "sampling": json.dumps({"length": 3, "segments": 2, "test_segments": 3, "crop": None,
                                "end_to_end": False}),
    }  # fmt: skip
    save_file(tensors, str(tmp_path / "good.safetensors"), metadata=full)
    assert load_action_model(tmp_path / "good.safetensors").classes == ["a", "b", "c"]
    huge = ClassifierConfig(in_channels=4, num_classes=3, width=1 << 20).to_json()
    cases = {
        "no_sampling": ({k: v for k, v in full.items() if k != "sampling"}, "incomplete.*'sampling'"),
        "no_crop": ({**full, "sampling": json.dumps({"end_to_end": False})}, "incomplete.*'length'"),
        "bad_json": ({**full, "classes": "[unclosed"}, "bad classifier metadata"),
        "bad_config": ({**full, "classifier": json.dumps({"in_channels": 0})}, "bad classifier metadata"),
        "e2e_no_motion": ({**full, "sampling": full["sampling"].replace("false", "true")}, "motion_config"),
        "huge": ({**full, "classifier": huge}, "tensors do not match"),
    }
    for name, (metadata, problem) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        with pytest.raises(InputError, match=f"{name}.safetensors: .*{problem}"):
            load_action_model(path)
