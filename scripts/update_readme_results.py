"""Regenerate the README's results section from the latest JSON files in ``benchmarks/results/``.

    python scripts/update_readme_results.py [--readme README.md] [--results benchmarks/results] [--check]

Everything between the lines ``<!-- results:start -->`` and ``<!-- results:end -->`` is replaced (the
markers stay); the rest of the README is untouched and the file is written atomically. Sections, each only
when its file exists: accuracy (``evaluation.json``), robustness on real footage (``robustness.json``),
ablation (``ablation.json``), model speed
(``model_speed.json``), ``scattermotion benchmark`` speed (``speed.json``), extraction speed
(``extract_speed.json``), ONNX Runtime speed (``onnx_speed.json``), training speed
(``train_speed.json``) and downstream motion classification
(``action.json``). ``--check`` changes nothing and
exits 1 when the README is out of date (for CI). Missing or misplaced markers: exit 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- results:start -->"
END = "<!-- results:end -->"


class MarkerError(Exception):
    """The README lacks the results markers, or has them out of order or more than once."""


# ---- one renderer per results file -----------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def _machine_line(report: dict[str, Any]) -> str:
    machine = report.get("machine") or {}
    parts = [f"run {report['date']}" if report.get("date") else None]
    keys = ("available_cores", "cpu_count", "cores")  # the names the benchmark scripts use
    cores = next((machine[k] for k in keys if machine.get(k)), None) or report.get("cpu_count")
    if cores:
        parts.append(f"{cores} CPU cores")
    if machine.get("cuda"):
        parts.append(str(machine["cuda"]))
    torch_version = machine.get("torch") or report.get("torch")
    if torch_version:
        parts.append(f"torch {torch_version}")
    opencv = machine.get("opencv") or report.get("opencv")
    if opencv:
        parts.append(f"OpenCV {opencv}")
    return "_" + ", ".join(p for p in parts if p) + "._"


def render_evaluation(report: dict[str, Any]) -> str:
    from scattermotion.evaluate import to_markdown

    return to_markdown(report)


def render_speed(report: dict[str, Any]) -> str:
    from scattermotion.benchmark import to_markdown

    return to_markdown(report)


def render_ablation(report: dict[str, Any]) -> str:
    sets = report["sets"]
    head = ["variant"] + [f"{s}: {m}" for s in sets for m in ("EPE", "boundary EPE")]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in report["rows"]:
        cells = [row["variant"]]
        for name in sets:
            metrics = row["sets"].get(name, {})
            cells += [_fmt(metrics.get("epe"), 2), _fmt(metrics.get("epe_boundary"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    steps = report.get("train_config", {}).get("steps")
    lines.append("")
    if report.get("warning"):
        lines.append(f"**Warning:** {report['warning']}.")
        lines.append("")
    lines.append(
        f"Every variant trained {steps} steps with the same schedule and data, real video self-supervised in "
        "all of them (the objective variants add terms on the synthetic clips' ground truth; "
        "`python benchmarks/ablation.py`); a short schedule compares the variants, it is not converged."
    )
    return "\n".join(lines) + "\n"


def render_extract_speed(report: dict[str, Any]) -> str:
    lines = [
        "| video | resize | W×H | method | pairs | pairs/s | × TV-L1 |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r.get('video', '')} | {r.get('size', '')} | {r.get('frame_size', '')} | "
            f"{r.get('label', r.get('method', ''))} | {r.get('pairs', '')} | "
            f"{_fmt(r.get('pairs_per_s'), 2)} | {_fmt(r.get('vs_tvl1'), 1)} |"
        )
    lines.append("")
    lines.append("End to end: decode + motion + flow_x/flow_y JPEGs (`python benchmarks/extract_speed.py`).")
    return "\n".join(lines) + "\n"


def render_onnx_speed(report: dict[str, Any]) -> str:
    lines = ["| engine | W×H | threads | pairs/s | ms/pair | max diff px |", "|---|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        diff = r.get("max_flow_diff_px")
        lines.append(
            f"| {r.get('engine', '')} | {r.get('width')}×{r.get('height')} | {r.get('threads', '')} | "
            f"{_fmt(r.get('pairs_per_s'))} | {_fmt(r.get('ms_per_pair'))} | "
            f"{f'{diff:.1e}' if isinstance(diff, int | float) else '–'} |"
        )
    lines.append("")
    lines.append(f"Weights: {report.get('weights', '?')} (`python benchmarks/onnx_speed.py`).")
    return "\n".join(lines) + "\n"


def render_action(report: dict[str, Any]) -> str:
    from scattermotion.action.results import to_markdown

    settings, options = report["benchmark"]["settings"], report["options"]
    command = "python benchmarks/action_recognition.py"
    if "per_class" in settings:
        command += f" --per-class {settings['per_class']} --test-per-class {settings['test_per_class']}"
    if options.get("ours_min_side"):
        command += f" --ours-min-side {options['ours_min_side']}"
    return to_markdown(report, heading=False) + f"\nCommand: `{command}`.\n"


def render_train_speed(report: dict[str, Any]) -> str:
    from scattermotion.training.speed import to_markdown

    recipe = report.get("recipe", {})
    crop = recipe.get("crop_size", ["?", "?"])
    lines = [
        _machine_line(report),
        "",
        to_markdown(report),
        "",
        f"One training step of the stage-2 recipe (small preset, {crop[1]}×{crop[0]} crops, batch "
        f"{recipe.get('batch_size')} of T={recipe.get('clip_len')} clips, half synthetic, EPE term "
        f"{recipe.get('supervised_weight')}), timed synchronously per phase, mean of {report.get('steps')} "
        "steps (`python benchmarks/train_speed.py`). bf16 measured: "
        + (
            "yes (" + ", ".join(report.get("cpu_bf16_features", [])) + ")"
            if report.get("bf16_measured")
            else "no"
        )
        + ".",
    ]
    return "\n".join(lines)


def render_precision_parity(report: dict[str, Any]) -> str:
    from scattermotion.training.parity import to_markdown

    init = report.get("init")
    start = f"fine-tuning the `{init}` weights at lr 1e-4" if init else "from random weights"
    command = "python benchmarks/precision_parity.py" + (f" --init {init}" if init else "")
    return "\n".join(
        [
            to_markdown(report),
            "",
            f"{report.get('steps')} steps per run {start}, the training-speed recipe with the default"
            " model's per-sample objective; validation EPE on the synthetic validation set at the end.",
            "",
            f"Command: `{command}`.",
            "",
        ]
    )


def render_robustness(report: dict[str, Any]) -> str:
    from scattermotion.robustness import to_markdown

    settings = report["settings"]
    command = (
        f"python benchmarks/robustness.py --pairs {settings['pairs']} --seed {settings['seed']} "
        f"--threads {settings.get('threads') or 2} --size {settings['width']}x{settings['height']}"
    )
    if report.get("weights") not in (None, "default"):
        command += f" --weights {Path(report['weights']).name}"
    return to_markdown(report) + f"\nCommand: `{command}`.\n"


SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("evaluation.json", "Accuracy: ours beside the classical baselines", render_evaluation),
    ("robustness.json", "Robustness on real footage", render_robustness),
    ("ablation.json", "Ablations", render_ablation),
    ("model_speed.json", "Inference speed and memory", render_speed),
    ("speed.json", "Speed (`scattermotion benchmark`)", render_speed),
    ("extract_speed.json", "Extraction speed (end to end)", render_extract_speed),
    ("onnx_speed.json", "ONNX Runtime vs PyTorch", render_onnx_speed),
    ("train_speed.json", "Training speed", render_train_speed),
    ("precision_parity.json", "Training in bf16 against fp32", render_precision_parity),
    ("action.json", "Downstream: motion classification on real footage", render_action),
]


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (the README should not name a home folder)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def render_results(results_dir: str | Path) -> str:
    """The Markdown of every results file present in ``results_dir`` (an explanatory line if none is)."""
    results_dir = Path(results_dir)
    parts = []
    for filename, title, render in SECTIONS:
        path = results_dir / filename
        if not path.is_file():
            continue
        try:
            report = json.loads(path.read_text())
            body = render(report)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: cannot render ({type(err).__name__}: {err})") from err
        parts.append(f"### {title}\n\n{_machine_line(report)} Source: `{_shown(path)}`.\n\n{body}")
    if not parts:
        return f"_No results yet: run the scripts in `benchmarks/` (looked in `{results_dir}`)._\n"
    return "\n".join(parts)


def replace_between_markers(text: str, body: str) -> str:
    """``text`` with everything between the marker lines replaced by ``body``; :class:`MarkerError` if the
    markers are missing, repeated or out of order."""
    starts, ends = text.count(START), text.count(END)
    if starts != 1 or ends != 1:
        raise MarkerError(
            f"expected exactly one {START} and one {END} line (found {starts} and {ends}); "
            "add them around the results section"
        )
    head, rest = text.split(START, 1)
    if END not in rest:
        raise MarkerError(f"{END} comes before {START}")
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n\n{body.strip()}\n\n{END}{tail}"


def update_readme(readme: str | Path, results_dir: str | Path, check: bool = False) -> bool:
    """Regenerate the results section of ``readme``; returns whether it changed (``check``: write nothing)."""
    readme = Path(readme)
    text = readme.read_text()
    updated = replace_between_markers(text, render_results(results_dir))
    if updated == text:
        return False
    if not check:
        from scattermotion.io.atomic import write_bytes_atomic

        write_bytes_atomic(readme, updated.encode())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(args.readme, args.results, check=args.check)
    except MarkerError as err:
        print(f"error: {args.readme}: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.readme}: {'out of date' if changed else 'up to date'}")
        return 1 if changed else 0
    print(f"{args.readme}: {'results section updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    sys.exit(main())
