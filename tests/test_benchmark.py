"""The speed/memory benchmark (``scattermotion benchmark``) on a tiny size, and the README results updater.

The benchmark runs each method in a fresh process: the DIS and zero processes never load torch, so their
peak memory must stay well below that of ours, which is what isolation is for."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import save_tiny_weights
from typer.testing import CliRunner

from scattermotion.benchmark import (
    SpeedTask,
    add_ratios,
    load_source_frames,
    measure,
    parse_methods,
    parse_sizes,
    parse_threads,
    resize_frames,
    run_benchmark,
    to_markdown,
)
from scattermotion.cli import app
from scattermotion.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
UPDATER = ROOT / "scripts" / "update_readme_results.py"


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_weights(path: Path) -> Path:
    return save_tiny_weights(path)


def test_benchmark_verb_isolated_processes(tmp_path):
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "speed.json"
    args = ["benchmark", "--sizes", "64x48", "--threads", "1", "--methods", "dis,zero,ours"]  # W×H
    args += ["--weights", str(weights), "--repeats", "1", "--pairs", "4", "--json", str(out), "-q"]
    args += ["--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["dis", "zero", "ours"]
    for row in rows.values():
        assert (row["height"], row["width"], row["threads"]) == (48, 64, 1)
        assert row["pairs_per_s"] > 0 and row["ms_per_pair"] == pytest.approx(1000 / row["pairs_per_s"])
        assert row["pairs_per_pass"] == 4 and row["isolated"] is True
        assert row["peak_rss_mb"] > 10 and row["rss_growth_mb"] >= 0
        assert row["peak_rss_mb"] >= row["baseline_rss_mb"]
    assert rows["dis"]["vs_dis"] == pytest.approx(1.0)
    assert rows["ours"]["vs_dis"] == pytest.approx(rows["ours"]["pairs_per_s"] / rows["dis"]["pairs_per_s"])
    assert "vs_tvl1" not in rows["ours"]  # TV-L1 was not measured
    # Fresh processes: the OpenCV-only ones never load torch, ours does (hundreds of MB more).
    assert rows["ours"]["peak_rss_mb"] > rows["dis"]["peak_rss_mb"] + 50
    assert rows["ours"]["clip_len"] == 3 and rows["ours"]["label"] == "ours (tiny.safetensors)"
    assert "| ours (tiny.safetensors) | 64×48 | 1 |" in result.output  # the table is W×H too
    assert "× DIS" in result.output


def test_in_process_measure_and_ratios():
    frames = resize_frames(load_source_frames(5), 32, 48)
    rows = [
        measure(SpeedTask("zero", 32, 48, threads=1, repeats=1, pairs=4), frames),
        measure(SpeedTask("dis", 32, 48, threads=1, repeats=1, pairs=4), frames),
    ]
    add_ratios(rows)
    assert rows[0]["pairs_per_s"] > rows[1]["pairs_per_s"] > 0  # nothing beats doing nothing
    assert rows[0]["vs_dis"] > 1 and rows[1]["vs_dis"] == pytest.approx(1.0)


def test_rounds_rerun_the_sweep_and_keep_each_entry_s_fastest_round():
    lines: list[str] = []
    report = run_benchmark(
        ["zero", "dis"], [(48, 32)], [1], repeats=1, pairs=2, isolate=False, rounds=2, progress=lines.append
    )
    assert report["rounds"] == 2 and [r["method"] for r in report["rows"]] == ["zero", "dis"]
    assert [line.split()[:2] for line in lines] == [["round", "1/2"]] * 2 + [["round", "2/2"]] * 2
    for index, row in enumerate(report["rows"]):
        rates = [float(lines[i].split("thr:")[1].split()[0]) for i in (index, index + 2)]
        assert row["rounds"] == 2 and row["pairs_per_s"] == pytest.approx(max(rates), abs=0.01)
    assert "Best of 1 passes after a warm-up, and of 2 rounds of the whole sweep;" in to_markdown(report)
    with pytest.raises(InputError, match="--rounds must be >= 1"):
        run_benchmark(["zero"], [(48, 32)], [1], repeats=1, rounds=0)


def test_the_refined_method_is_timed_like_ours():
    frames = resize_frames(load_source_frames(5), 32, 48)
    row = measure(SpeedTask("ours-refined", 32, 48, threads=1, repeats=1, pairs=4), frames)
    assert row["pairs_per_s"] > 0 and row["clip_len"] == 4


def test_missing_weights_and_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="weights file not found"):
        run_benchmark(["ours"], [(32, 32)], [1], weights=tmp_path / "none.safetensors", repeats=1)
    with pytest.raises(InputError, match="--sizes '224': expected WxH"):
        parse_sizes("224")
    with pytest.raises(InputError, match="--sizes '4x64': too small"):
        parse_sizes("64x64,4x64")
    with pytest.raises(InputError, match="not a number"):
        parse_threads("1,many")
    with pytest.raises(InputError, match="unknown method"):
        parse_methods("dis,raft")
    assert parse_sizes("320x224, 340×256") == [(320, 224), (340, 256)]  # (W, H): width first
    assert parse_threads("1,1,2") == [1, 2]


# ---- README updater ---------------------------------------------------------------------------------------


def load_updater():
    spec = importlib.util.spec_from_file_location("update_readme_results", UPDATER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_results(folder: Path) -> None:
    from scattermotion.evaluate import run_evaluation, write_report

    folder.mkdir(parents=True)
    write_report(run_evaluation(["motorcycle"], ["zero", "dis"]), folder / "evaluation.json")
    speed = {
        "benchmark": "model_speed",
        "repeats": 1,
        "rows": [
            {"method": "dis", "label": "DIS-medium", "height": 32, "width": 32, "threads": 1,
             "pairs_per_s": 500.0, "ms_per_pair": 2.0, "peak_rss_mb": 60.0, "rss_growth_mb": 5.0},
        ],
    }  # fmt: skip
    (folder / "model_speed.json").write_text(json.dumps(speed))


def test_readme_updater_replaces_only_the_marked_section(tmp_path):
    updater = load_updater()
    results = tmp_path / "benchmarks" / "results"
    write_results(results)
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro.\n\n", "\n\n## Later\n\nKept as it is.\n"
    readme.write_text(f"{before}{updater.START}\nstale table\n{updater.END}{after}")
    assert updater.main(["--readme", str(readme), "--results", str(results)]) == 0
    text = readme.read_text()
    assert text.startswith(before + updater.START) and text.endswith(updater.END + after)
    section = text[len(before) : -len(after)]
    assert "stale table" not in section
    assert "### Accuracy" in section and "| motorcycle | 370x250 |" in section and "**1.48**" in section
    assert "### Inference speed and memory" in section and "| DIS-medium | 32×32 | 1 | 500.0 |" in section
    assert updater.main(["--readme", str(readme), "--results", str(results), "--check"]) == 0
    (results / "model_speed.json").unlink()
    assert updater.main(["--readme", str(readme), "--results", str(results), "--check"]) == 1
    assert readme.read_text() == text  # --check writes nothing
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["README.md"]  # no temporaries left


def action_report() -> dict:
    """A minimal ``benchmarks/action_recognition.py`` report: two classes, ours and TV-L1."""
    classes = ["static", "pan-left"]
    stream = {
        "label": "ours (default model)",
        "accuracy_mean": 0.75,
        "accuracy_std": 0.05,
        "per_class_accuracy": {"static": 1.0, "pan-left": 0.5},
        "extraction": {"ms_per_clip": 12.5, "fraction_of_tvl1": 0.025},
    }
    tvl1 = {**stream, "label": "tvl1", "accuracy_mean": 0.9, "extraction": {"ms_per_clip": 500.0}}
    return {
        "benchmark": {"settings": {"frames": 16, "width": 112, "height": 112}, "train_clips": 4,
                      "test_clips": 2, "classes": classes},
        "options": {"segments": 3, "length": 5, "epochs": 2, "seeds": [0, 1], "fusion_weight": 1.5},
        "machine": {"extract_threads": 1, "cores": 2, "device": "cpu", "torch": "2.13.0"},
        "streams": {"ours": stream, "tvl1": tvl1},
        "fusion": {"ours": {"accuracy_mean": 0.8, "accuracy_std": 0.0}},
    }  # fmt: skip


def test_readme_updater_renders_the_action_benchmark(tmp_path):
    updater = load_updater()
    (tmp_path / "action.json").write_text(json.dumps(action_report()))
    section = updater.render_results(tmp_path)
    assert section.startswith("### Downstream: motion classification on real footage")
    assert "| ours (default model) | 0.750 ± 0.050 | 12.5 | 0.025 |" in section
    assert "| tvl1 | 0.900 ± 0.050 | 500.0 | – |" in section
    assert "| ours (default model) + RGB (late fusion, 1.5 : 1) | 0.800 ± 0.000 | | |" in section
    assert "| pan-left | 0.50 | 0.50 |" in section
    assert "2 CPU cores" in section and "`python benchmarks/action_recognition.py`" in section


def test_readme_updater_needs_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nNo markers here.\n")
    done = subprocess.run(
        [sys.executable, str(UPDATER), "--readme", str(readme), "--results", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "<!-- results:start -->" in done.stderr and done.stderr.count("\n") == 1
    assert readme.read_text() == "# Title\n\nNo markers here.\n"
