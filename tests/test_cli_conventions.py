"""One rule per CLI convention: sizes are WxH and errors name the flag used, every verb rejects unknown
options, ``--workers`` means processes and ``--threads`` threads (one helper), and the ``action`` verbs only
parse and print: their work is in ``action.engine``, which returns dataclasses."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
from typer.testing import CliRunner

from scattermotion.action.engine import DataSpec, EvaluationRun, TrainOptions, evaluate_models, train_and_test
from scattermotion.action.motionbench import BenchSettings, make_motion_bench
from scattermotion.action.sources import parse_source
from scattermotion.benchmark import parse_sizes
from scattermotion.cli import app
from scattermotion.data.fetched import real_video
from scattermotion.errors import InputError
from scattermotion.extract import ExtractOptions, extract
from scattermotion.inputs import parse_size
from scattermotion.threads import set_threads

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(before[0])
    cv2.setNumThreads(before[1])


def test_demo_rejects_unknown_options_like_every_verb(tmp_path):
    for verb in (["demo"], ["flow", "a.png", "b.png", "-o", "x.flo"]):
        result = CliRunner().invoke(app, [*verb, "--framez", "3", "--out", str(tmp_path / "demo")])
        assert result.exit_code == 2, result.output
        assert "No such option: --framez" in result.output
    assert not (tmp_path / "demo").exists()  # the demo never ran


def test_sizes_are_width_first_everywhere():
    assert parse_size("320x224") == (320, 224)
    assert parse_sizes("320x224,224x224") == [(320, 224), (224, 224)]  # --sizes used to be HxW


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["extract", "x.mp4", "-o", "out", "--resize", "340"], "--resize"),
        (["train", "-o", "run", "--crop", "0x64"], "--crop"),
        (["action", "make-bench", "-o", "bench", "--size", "big"], "--size"),
        (["benchmark", "--sizes", "224x224,256"], "--sizes"),
    ],
)
def test_a_bad_size_names_the_flag_used(tmp_path, args, flag):
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{flag} '") and "expected WxH" in str(result.exception)
    assert "\n" not in str(result.exception)


def test_threads_helper_validates_and_leaves_torch_alone_when_asked(restore_threads):
    with pytest.raises(InputError, match="--threads must be >= 1, got 0"):
        set_threads(0)
    torch.set_num_threads(1)
    set_threads(2, with_torch=False)
    assert cv2.getNumThreads() == 2 and torch.get_num_threads() == 1
    set_threads(2)
    assert torch.get_num_threads() == 2


def test_workers_are_processes_and_threads_are_threads(tmp_path, restore_threads):
    with pytest.raises(InputError, match="--workers N runs N processes.*use --threads N"):
        ExtractOptions(out_dir=tmp_path, method="ours", workers=2)  # it used to mean ours' torch threads
    result = CliRunner().invoke(app, ["action", "train", str(tmp_path), "-o", "r", "--threads", "0"])
    assert "--threads must be >= 1" in str(result.exception)
    torch.set_num_threads(2)
    options = ExtractOptions(out_dir=tmp_path / "out", method="zero", threads=1, max_frames=3, progress=False)
    summary = extract([str(real_video("tree"))], options)
    assert summary.exit_code == 0
    assert cv2.getNumThreads() == 1 and torch.get_num_threads() == 2  # a classical run leaves torch alone


def test_action_engine_returns_dataclasses(tmp_path):
    bench = tmp_path / "bench"
    settings = BenchSettings(per_class=2, test_per_class=1, frames=6, width=32, height=32,
                             classes=("pan-left", "pan-right"))  # fmt: skip
    make_motion_bench(bench, settings, progress=None)
    data = DataSpec(bench, cache_dir=tmp_path / "cache")
    options = TrainOptions(epochs=1, segments=1, test_segments=2, width=8, batch_size=2, length=1)
    rgb = train_and_test(data, parse_source("rgb"), options, tmp_path / "rgb", evaluate=False)
    assert rgb.test is None and rgb.kind == "rgb" and (rgb.classes, rgb.train_videos) == (2, 4)
    assert "test" not in json.loads(rgb.path.with_suffix(".json").read_text())
    tested = train_and_test(data, parse_source("rgb"), options, tmp_path / "tested")
    assert tested.test_videos == 2 and 0 <= tested.test.accuracy <= 1
    single = evaluate_models(data, [rgb.path])
    assert isinstance(single, EvaluationRun) and single.fusion is None and "fusion" not in single.to_dict()
    both = evaluate_models(data, [rgb.path, tested.path], fusion_weight=2.0)
    assert both.fusion.weights == [1.0, 1.0]  # RGB streams weigh 1 whatever the motion weight
    assert [s["model"] for s in both.to_dict()["streams"]] == [str(rgb.path), str(tested.path)]
