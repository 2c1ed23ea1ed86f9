"""Speed and memory of motion methods on real frames, every method in the same run (``scattermotion
benchmark`` and ``benchmarks/model_speed.py``).

Each (method, size, threads) entry runs in a **fresh Python process**, so one method's allocations, thread
pools and caches cannot inflate another's numbers. The process loads the frames, notes its resident memory
(RSS), builds the method, runs one untimed warm-up pass and then ``repeats`` timed passes; it reports the
best pass (the machine may be shared: the best is the least disturbed), its peak RSS, the RSS growth over
the baseline taken before the method was built, and on CUDA the peak GPU memory PyTorch allocated. With
``rounds`` > 1 the whole sweep runs again that many times and each entry keeps its fastest round.

A pass is what a user's call does: ours runs ``estimate_clip`` over ``pairs + 1`` consecutive frames (the
network sees windows of its ``clip_len`` frames; uint8 -> float, padding and the copy back included);
a classical method runs ``estimate`` on ``pairs`` adjacent pairs (grayscale conversion included). Classical
processes never import torch, so their memory is what an OpenCV-only user pays.

Frames are real footage (OpenCV's ``vtest.avi`` from frame 100), resized with ``INTER_AREA``. Sizes are
given as W×H like every size option (``340x256``: 340 columns, 256 rows, TSN's frame size).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scattermotion.errors import InputError
from scattermotion.methods import OURS, REGISTRY, SPEED, build_estimator, check_methods, method_label
from scattermotion.reporting import available_cores, machine_info
from scattermotion.threads import set_threads

DEFAULT_METHODS = (OURS, "tvl1", "dis", "farneback")
DEFAULT_SIZES = ((224, 224), (340, 256))  # W×H
DEFAULT_THREADS = "1,all"
DEFAULT_PAIRS = 12  # pairs per timed pass: 4 windows of T=4
SLOW_PAIRS = {"tvl1": 3}  # ~1 s per pair on one core: a few pairs are enough
SOURCE_FRAME = 100  # vtest.avi: pedestrians in view from here
RESULT_PREFIX = "BENCHMARK-RESULT "
ERROR_PREFIX = "BENCHMARK-ERROR "


@dataclass
class SpeedTask:
    """One measurement: ``method`` at ``height``×``width`` with ``threads`` CPU threads."""

    method: str
    height: int
    width: int
    threads: int
    weights: str | None = None  # ours: the weights file (None: the packaged default)
    device: str = "cpu"  # ours only; classical methods run on the CPU
    repeats: int = 3
    pairs: int | None = None  # pairs per timed pass (None: the method's default)
    label: str | None = None

    def pairs_per_pass(self) -> int:
        return self.pairs if self.pairs is not None else SLOW_PAIRS.get(self.method, DEFAULT_PAIRS)


# ---- parsing ---------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"224x224,340x256"`` -> ``[(224, 224), (340, 256)]``: W×H each, like every size option
    (``--sizes`` used to be H×W); InputError for anything else."""
    from scattermotion.inputs import parse_size  # here, not at the top: measuring processes skip PyAV

    sizes = []
    for part in text.split(","):
        width, height = parse_size(part, "--sizes")
        if width < 8 or height < 8:
            raise InputError(None, f"--sizes {part.strip()!r}: too small (at least 8x8)")
        sizes.append((width, height))
    return sizes


def parse_threads(text: str) -> list[int]:
    """``"1,all"`` -> ``[1, cores]``; duplicates dropped, order kept."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            count = available_cores() if part == "all" else int(part)
        except ValueError:
            raise InputError(None, f"--threads: {part!r} is not a number or 'all'") from None
        if count < 1:
            raise InputError(None, f"--threads: {count} must be >= 1")
        if count not in counts:
            counts.append(count)
    return counts


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"ours,dis"`` (or several such) as checked method names, order kept (:data:`methods.SPEED`)."""
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    return check_methods((p.strip() for p in parts if p.strip()), SPEED)


# ---- frames ----------------------------------------------------------------------------------------------


def load_source_frames(count: int = DEFAULT_PAIRS + 1) -> np.ndarray:
    """``count`` consecutive RGB frames of OpenCV's vtest.avi (real pedestrian footage), N×H×W×3 uint8."""
    from scattermotion.data.fetched import real_video
    from scattermotion.data.video import open_video

    source = open_video(real_video("vtest"))
    frames = []
    for frame in source.frames(start=SOURCE_FRAME):
        frames.append(frame)
        if len(frames) == count:
            break
    if len(frames) < count:
        raise InputError(source.path, f"could read only {len(frames)} of {count} frames")
    return np.stack(frames)


def resize_frames(frames: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]


# ---- memory ----------------------------------------------------------------------------------------------


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux: /proc; elsewhere the peak, the best available)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own address space.
    ``ru_maxrss`` is not used there because it survives ``exec``: a fresh child would report its parent's
    peak when that is larger. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB otherwise).
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# ---- timing (runs inside the measuring process) ----------------------------------------------------------


def _make_pass(task: SpeedTask, frames: list[np.ndarray]) -> tuple[Callable[[], None], dict[str, Any]]:
    """The function one timed pass calls, and facts about the method (config, clip length)."""
    pairs = task.pairs_per_pass()
    if not REGISTRY[task.method].needs_torch:  # OpenCV straight away: this process never imports torch
        from scattermotion.baselines import ClassicalFlow

        flow = ClassicalFlow(task.method)
        if len(frames) < 2:
            raise ValueError("need at least 2 frames")

        def run_classical() -> None:
            for i in range(pairs):
                j = i % (len(frames) - 1)
                flow.estimate(frames[j], frames[j + 1])

        return run_classical, {}

    estimator = build_estimator(task.method, task.weights, device=task.device, allowed=SPEED)
    if len(frames) < pairs + 1:
        raise ValueError(f"need {pairs + 1} frames for {pairs} pairs, got {len(frames)}")
    clip = frames[: pairs + 1]

    def run_ours() -> None:
        estimator.estimate_clip(clip)  # returns NumPy: a CUDA run has finished when it returns

    facts = {"clip_len": estimator.clip_len, "config": estimator.model.config.to_dict()}
    return run_ours, facts


def measure(task: SpeedTask, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """Time ``task`` on ``frames`` (already at the task's size) in this process; see the module docstring."""
    uses_torch = REGISTRY[task.method].needs_torch
    set_threads(task.threads, with_torch=uses_torch)
    frames = list(frames)
    cuda = uses_torch and task.device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    baseline_rss = current_rss_mb()
    run, facts = _make_pass(task, frames)
    run()  # warm-up: lazy initialisation, allocator and thread-pool start-up are not timed
    best = math.inf
    for _ in range(task.repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    pairs = task.pairs_per_pass()
    peak = peak_rss_mb()
    row: dict[str, Any] = {
        "method": task.method,
        "label": task.label or method_label(task.method),
        "height": task.height,
        "width": task.width,
        "threads": task.threads,
        "device": task.device if uses_torch else "cpu",
        "pairs_per_pass": pairs,
        "repeats": task.repeats,
        "pairs_per_s": pairs / best,
        "ms_per_pair": 1000 * best / pairs,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": peak,
        "rss_growth_mb": max(0.0, peak - baseline_rss),
        **facts,
    }
    if cuda:
        import torch

        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["gpu_name"] = torch.cuda.get_device_name()
    return row


def _worker(task_json: str, frames_path: str) -> None:
    """Entry point of a measuring process: resize the shared frames, measure, print one result line."""
    task = SpeedTask(**json.loads(task_json))
    source = np.load(frames_path)
    frames = resize_frames(source, task.height, task.width)
    del source
    try:
        row = measure(task, frames)
    except InputError as err:  # bad weights and the like: handed back as one line, not a traceback
        print(ERROR_PREFIX + json.dumps({"path": err.path, "problem": err.problem}), flush=True)
        sys.exit(1)
    print(RESULT_PREFIX + json.dumps(row), flush=True)


def measure_isolated(task: SpeedTask, frames_path: str | os.PathLike, timeout: float | None = None) -> dict:
    """Run :func:`measure` for ``task`` in a fresh Python process (frames from the ``.npy`` at
    ``frames_path``); thread-count environment variables are set so OpenMP pools match ``threads``."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(task.threads)
    command = [sys.executable, "-m", "scattermotion.benchmark", json.dumps(asdict(task)), str(frames_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
        if line.startswith(ERROR_PREFIX):
            error = json.loads(line[len(ERROR_PREFIX) :])
            raise InputError(error["path"], error["problem"])
    tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    raise RuntimeError(f"benchmark of {task.method} failed (exit {done.returncode}): {tail}")


# ---- the whole benchmark ---------------------------------------------------------------------------------


def resolve_ours(method: str, weights: str | os.PathLike | None) -> tuple[str, str | None, str]:
    """(method, weights, label): ours (refined or not) times ``weights`` or the packaged default model."""
    from scattermotion.estimator import DEFAULT_WEIGHTS

    if not REGISTRY[method].takes_weights:
        return method, None, method_label(method)
    if weights is not None and not Path(weights).is_file():
        raise InputError(weights, "weights file not found")
    return method, str(weights or DEFAULT_WEIGHTS), method_label(method, weights)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``vs_tvl1`` / ``vs_dis``: a row's pairs/s over TV-L1's / DIS-medium's at the same size and threads."""
    for row in rows:
        for reference, key in (("tvl1", "vs_tvl1"), ("dis", "vs_dis")):
            match = next(
                (
                    r
                    for r in rows
                    if r["method"] == reference
                    and (r["height"], r["width"], r["threads"])
                    == (row["height"], row["width"], row["threads"])
                ),
                None,
            )
            if match is not None:
                row[key] = row["pairs_per_s"] / match["pairs_per_s"]


def run_benchmark(
    methods: Sequence[str] = DEFAULT_METHODS,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    threads: Sequence[int] | None = None,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    repeats: int = 3,
    pairs: int | None = None,
    isolate: bool = True,
    progress: Callable[[str], None] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Measure every method at every ``(width, height)`` size and thread count (see the module docstring);
    returns the report (``rows`` with ratios to TV-L1 and DIS where those were measured). ``device="auto"``
    runs ours on CUDA when present. ``isolate=False`` measures in this process (faster; memory numbers
    then mix methods). ``rounds``: the whole sweep that many times, one after the other, each entry keeping
    its fastest round: a shared machine's slow phases last minutes, longer than one entry's passes, and
    slow whatever runs then (here one method read 62 pairs/s in one run and 100 in the next, same code)."""
    if repeats < 1:
        raise InputError(None, f"--repeats must be >= 1, got {repeats}")
    if rounds < 1:
        raise InputError(None, f"--rounds must be >= 1, got {rounds}")
    threads = list(threads) if threads is not None else parse_threads(DEFAULT_THREADS)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = [resolve_ours(m, weights) for m in methods]
    frame_count = max(DEFAULT_PAIRS, pairs or 0) + 1
    source = load_source_frames(frame_count)
    load_before = os.getloadavg()
    tasks = [
        SpeedTask(
            method=method,
            height=height,
            width=width,
            threads=count,
            weights=method_weights,
            device=device if REGISTRY[method].needs_torch else "cpu",
            repeats=repeats,
            pairs=pairs,
            label=label,
        )
        for width, height in sizes
        for count in threads
        for method, method_weights, label in resolved
    ]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scattermotion-bench-") as scratch:
        frames_path = Path(scratch) / "frames.npy"
        np.save(frames_path, source)
        for number in range(1, rounds + 1):
            for index, task in enumerate(tasks):
                if isolate:
                    row = measure_isolated(task, frames_path)
                else:
                    row = measure(task, resize_frames(source, task.height, task.width))
                row["isolated"] = isolate
                row["rounds"] = rounds
                if number == 1:
                    rows.append(row)
                elif row["pairs_per_s"] > rows[index]["pairs_per_s"]:
                    rows[index] = row
                if progress:
                    progress(
                        f"{'' if rounds == 1 else f'round {number}/{rounds} '}{task.label:>28s} "
                        f"{task.width}x{task.height} {task.threads} thr: {row['pairs_per_s']:8.2f} pairs/s, "
                        f"peak RSS {row['peak_rss_mb']:.0f} MB"
                    )
    add_ratios(rows)
    return {
        "benchmark": "speed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "source": f"vtest.avi frames {SOURCE_FRAME}..{SOURCE_FRAME + frame_count - 1}, INTER_AREA resize",
        "repeats": repeats,
        "rounds": rounds,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }


def _megabytes(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else ""


def _ratio(value: float | None, digits: int) -> str:
    return f"{value:.{digits}f}×" if value is not None else ""


def to_markdown(report: dict[str, Any]) -> str:
    """One table: pairs/s, ms/pair, ratios to TV-L1 and DIS, peak RSS and its growth (GPU peak on CUDA)."""
    rows = report["rows"]
    gpu = any("gpu_peak_mb" in r for r in rows)
    head = [
        "method",
        "W×H",
        "threads",
        "pairs/s",
        "ms/pair",
        "× TV-L1",
        "× DIS",
        "peak RSS MB",
        "RSS growth MB",
    ]
    if gpu:
        head.append("GPU peak MB")
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [
            r.get("label") or r["method"],
            f"{r['width']}×{r['height']}",
            str(r["threads"]),
            f"{r['pairs_per_s']:.1f}",
            f"{r['ms_per_pair']:.1f}",
            _ratio(r.get("vs_tvl1"), 1),
            _ratio(r.get("vs_dis"), 2),
            _megabytes(r.get("peak_rss_mb")),
            _megabytes(r.get("rss_growth_mb")),
        ]
        if gpu:
            cells.append(_megabytes(r.get("gpu_peak_mb")))
        lines.append("| " + " | ".join(cells) + " |")
    load = report.get("load_average_before")
    lines.append("")
    isolated = all(r.get("isolated", False) for r in rows)
    rounds = report.get("rounds", 1)
    lines.append(
        f"Best of {report.get('repeats', '?')} passes after a warm-up"
        + (f", and of {rounds} rounds of the whole sweep" if rounds > 1 else "")
        + (", each method in a fresh process; " if isolated else "; ")
        + "× TV-L1 / × DIS: pairs/s over theirs at the same size and threads; RSS growth: peak RSS minus "
        "the RSS before the method was built"
        + (f"; load average before: {load[0]:.2f}" if load else "")
        + "."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # a measuring process started by measure_isolated
    if len(sys.argv) != 3:
        sys.exit("usage: python -m scattermotion.benchmark TASK_JSON FRAMES_NPY (started by run_benchmark)")
    _worker(sys.argv[1], sys.argv[2])
