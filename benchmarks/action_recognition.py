"""Downstream benchmark: the same TSN classifier trained and tested on each motion source, in one run.

Builds (or finds) the generated real-footage motion benchmark (``scattermotion action make-bench``), then
for every motion source (ours, TV-L1, DIS, RGB difference; ours-refined on request) extracts the motion
of every clip once, timing the extraction per clip (frames already decoded; same threads for every
method), trains the default compact TSN with 3 seeds and tests it; does the same for the RGB stream, and
fuses each motion stream with the RGB stream (late fusion, motion weight 1.5). Prints a Markdown table:
accuracy mean ± std over the seeds, extraction ms per clip and the ratio to TV-L1's time; writes
``benchmarks/results/action.json`` and ``action.md`` (atomically).

    python benchmarks/action_recognition.py [--weights W] [--seeds 0,1,2] [--epochs 20]
        [--per-class 20 --test-per-class 10] [--sources ours,tvl1,dis,rgbdiff]
        [--threads N] [--ours-min-side 224]

``ours`` needs ``--weights`` or the packaged default model; without either the script stops with a message.
``--random-ours`` (pipeline check only) uses an untrained network instead and never writes the default
result files.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from scattermotion.action.datasets import load_videos
from scattermotion.action.engine import TrainOptions, accuracy, fuse, predict, train_action
from scattermotion.action.motionbench import VERSION as BENCH_VERSION
from scattermotion.action.motionbench import BenchSettings, make_motion_bench
from scattermotion.action.results import to_markdown
from scattermotion.action.sources import make_source, parse_source
from scattermotion.data.video import open_video
from scattermotion.estimator import DEFAULT_WEIGHTS
from scattermotion.io.atomic import write_bytes_atomic, write_json_atomic
from scattermotion.methods import MOTION_SOURCES, method_label, uses_network
from scattermotion.threads import set_threads

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SOURCES = ("ours", "tvl1", "dis", "rgbdiff")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def default_bench_dir(settings: BenchSettings) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scattermotion"
    tag = f"s{settings.seed}-{settings.per_class}x{settings.test_per_class}-{settings.frames}f"
    return base / f"motionbench-v{BENCH_VERSION}-{tag}-{settings.width}x{settings.height}"


def ours_weights(args: argparse.Namespace, scratch: Path, method: str) -> tuple[str | None, str]:
    """The weights for ``method`` (ours, refined or not) and the label of its rows; exits with a message when
    a weights file is missing."""
    if args.random_ours:
        from scattermotion.model import build_motion_net, save_weights

        torch.manual_seed(0)
        path = scratch / "random_small.safetensors"
        save_weights(build_motion_net("small"), path)
        return str(path), f"{method} (RANDOM weights: pipeline check only)"
    if args.weights and not Path(args.weights).is_file():
        sys.exit(f"error: {args.weights}: weights file not found")
    weights = Path(args.weights).resolve() if args.weights else DEFAULT_WEIGHTS
    return str(weights), method_label(method, args.weights)


def rgbdiff_ms_per_clip(records, short_side: int | None) -> float:
    """RGB difference 'extraction': differencing the decoded frames of every clip, timed like the others."""
    seconds = 0.0
    for record in records:
        frames = open_video(record.path, short_side=short_side).read_all().astype(np.float32)
        start = time.perf_counter()
        _ = (frames[1:] - frames[:-1]) * np.float32(1.0 / 255.0)
        seconds += time.perf_counter() - start
    return 1000.0 * seconds / len(records)


def per_class_accuracy(runs: list[np.ndarray], labels: list[int], classes: list[str]) -> dict[str, float]:
    """Accuracy of each class, averaged over the seeds' runs: which motions a source fails on."""
    labels_array = np.asarray(labels)
    hits = np.mean([np.argmax(scores, axis=1) == labels_array for scores in runs], axis=0)
    return {name: float(hits[labels_array == c].mean()) for c, name in enumerate(classes)}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark; scratch files (random weights, the default motion cache) are removed after."""
    scratch = Path(tempfile.mkdtemp(prefix="action-bench-"))
    try:
        return run_in(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_in(args: argparse.Namespace, scratch: Path) -> dict:
    settings = BenchSettings(
        per_class=args.per_class,
        test_per_class=args.test_per_class,
        frames=args.frames,
        width=args.width,
        height=args.height,
        seed=args.bench_seed,
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    cache = Path(args.cache) if args.cache else scratch / "cache"
    streams = {}  # checked before any work: a missing model stops the run at once
    for name in [*sources, "rgb"]:
        # ours and ours-refined: the same network, weights and input scale
        weights, label = ours_weights(args, scratch, name) if uses_network(name) else (None, name)
        min_side = args.ours_min_side if uses_network(name) else None
        if min_side:
            label += f", frames scaled to short side {min_side}"
        spec = parse_source(name, weights=weights, bound=args.bound, device=args.device, min_side=min_side)
        streams[name] = (spec, label)
    bench_dir = Path(args.bench) if args.bench else default_bench_dir(settings)
    say(f"benchmark clips: {bench_dir}")
    make_motion_bench(bench_dir, settings)
    train_set = load_videos(bench_dir, "ucf101", "train")
    test_set = load_videos(bench_dir, "ucf101", "test")
    records = train_set.records + test_set.records
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "benchmark": {"path": str(bench_dir), "settings": settings.to_dict(), "train_clips": len(train_set),
                      "test_clips": len(test_set), "classes": train_set.classes},
        "options": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "segments": 3,
                    "test_segments": 5, "length": 5, "backbone": "compact", "width": 32, "seeds": seeds,
                    "fusion_weight": args.fusion_weight, "bound": args.bound,
                    "ours_min_side": args.ours_min_side},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "train_threads": args.threads, "extract_threads": args.extract_threads,
                    "device": args.device, "torch": torch.__version__, "opencv": cv2.__version__},
        "streams": {},
        "fusion": {},
    }  # fmt: skip
    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device)
    scores: dict[str, list[np.ndarray]] = {}
    for name, (spec, label) in streams.items():
        entry: dict = {"label": label}
        if spec.kind in MOTION_SOURCES:
            say(f"{label}: extracting the motion of {len(records)} clips")
            set_threads(args.extract_threads)
            stats = make_source(spec, cache).prepare(records)
            entry["extraction"] = {
                "clips": stats.clips, "pairs": stats.pairs, "seconds": stats.seconds,
                "ms_per_clip": stats.ms_per_clip, "ms_per_pair": stats.ms_per_pair,
                "measured_now": stats.computed, "from_cache": stats.reused,
            }  # fmt: skip
        elif name == "rgbdiff":
            entry["extraction"] = {"ms_per_clip": rgbdiff_ms_per_clip(records, None)}
        set_threads(args.threads)
        entry["runs"] = []
        scores[name] = []
        for seed in seeds:
            started = time.perf_counter()
            model, history = train_action(train_set, spec, options_with_seed(options, seed), cache)
            test_scores = predict(model, test_set, cache_dir=cache, device=args.device)
            acc = accuracy(test_scores, test_set.labels())
            scores[name].append(test_scores)
            entry["runs"].append({"seed": seed, "accuracy": acc,
                                  "train_accuracy": history.epochs[-1]["train_accuracy"],
                                  "seconds": time.perf_counter() - started})  # fmt: skip
            say(f"{label}: seed {seed}: test accuracy {acc:.4f}")
        entry["accuracy_mean"], entry["accuracy_std"] = mean_std([r["accuracy"] for r in entry["runs"]])
        entry["per_class_accuracy"] = per_class_accuracy(scores[name], test_set.labels(), train_set.classes)
        report["streams"][name] = entry
    labels = test_set.labels()
    for name in sources:
        accs = [
            accuracy(fuse([motion, rgb], [args.fusion_weight, 1.0]), labels)
            for motion, rgb in zip(scores[name], scores["rgb"], strict=True)
        ]
        mean, std = mean_std(accs)
        report["fusion"][name] = {"accuracies": accs, "accuracy_mean": mean, "accuracy_std": std}
    tvl1 = report["streams"].get("tvl1", {}).get("extraction", {}).get("ms_per_clip")
    for entry in report["streams"].values():
        ms = entry.get("extraction", {}).get("ms_per_clip")
        if ms is not None and tvl1:
            entry["extraction"]["fraction_of_tvl1"] = ms / tvl1
    return report


def options_with_seed(options: TrainOptions, seed: int) -> TrainOptions:
    from dataclasses import replace

    return replace(options, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", help="Benchmark folder (built there if missing; default: ~/.cache/...)")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--height", type=int, default=112)
    parser.add_argument("--bench-seed", type=int, default=0, help="Seed of the generated clips.")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES), help="Motion sources to compare.")
    parser.add_argument("--weights", help="Weights for ours (default: the packaged model).")
    parser.add_argument("--random-ours", action="store_true", help="Untrained ours: pipeline check only.")
    parser.add_argument(
        "--ours-min-side",
        type=int,
        default=None,
        help="ours: run the network on frames scaled up to this short side (MotionEstimator min_side).",
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bound", type=float, default=20.0)
    parser.add_argument("--fusion-weight", type=float, default=1.5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for training (1: robust on a shared machine)."
    )
    parser.add_argument(
        "--extract-threads", type=int, default=1, help="torch and OpenCV threads of every motion method."
    )
    parser.add_argument("--device", default="cpu", help="ours and the classifier: cpu | cuda.")
    parser.add_argument("--cache", help="Keep motion here (re-runs reuse it and its recorded timings).")
    parser.add_argument("--json", help=f"Results JSON (default {RESULTS / 'action.json'}).")
    parser.add_argument("--markdown", help=f"Results table (default {RESULTS / 'action.md'}).")
    args = parser.parse_args()
    report = run(args)
    table = to_markdown(report)
    print(table)
    json_path = Path(args.json) if args.json else (None if args.random_ours else RESULTS / "action.json")
    md_path = Path(args.markdown) if args.markdown else (None if args.random_ours else RESULTS / "action.md")
    if json_path is not None:
        write_json_atomic(json_path, report, indent=2, make_parents=True)
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(md_path, table.encode())


if __name__ == "__main__":
    main()
