"""Inference speed of MotionNet in PyTorch against its ONNX export in onnxruntime (CPU), one run, real frames.

    python benchmarks/onnx_speed.py [--weights W] [--repeats 3] [--output benchmarks/results/onnx_speed.json]

Prints a Markdown table (frame pairs/s and ms/pair at 224×224 and 256×352, 1 and 2 threads) and writes the
numbers as JSON. Both engines run clips of T=4 real frames (vtest.avi; 3 pairs per forward, batch 1) already
in memory: PyTorch under ``torch.inference_mode``, onnxruntime on the graph from
:func:`scattermotion.export.export_onnx` (dynamic batch/height/width; one file for both sizes). Each number
is the best of ``--repeats`` timed runs (the machine may be shared: the best run is the least disturbed one).
The table also gives the largest |flow difference| between the two engines on the timed clips.

Note: the exported graph always uses the shifted-window correlation; PyTorch picks the all-pairs form for
small cell grids (the coarse level at these sizes), so the two engines do not run identical kernels.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import torch

from scattermotion.data.fetched import real_video
from scattermotion.export import export_onnx, onnx_session, run_onnx
from scattermotion.io.atomic import write_json_atomic
from scattermotion.model import MotionNet, build_motion_net, load_weights
from scattermotion.threads import set_threads

SIZES = ((224, 224), (256, 352))  # H×W, both multiples of the stride (no padding)
THREADS = (1, 2)
CLIP_LEN = 4
RUNS = 8  # forwards per timed run (3 pairs each)
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "onnx_speed.json"


def read_frames(count: int) -> list[np.ndarray]:
    """``count`` consecutive RGB frames of OpenCV's vtest.avi (real pedestrian footage), from frame 100."""
    path = real_video("vtest")
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            raise SystemExit(f"{path}: could read only {len(frames)} frames")
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def make_clips(frames: list[np.ndarray], height: int, width: int) -> list[torch.Tensor]:
    """1×T×3×H×W float clips in [0, 1] that share their end frames (as extraction windows do)."""
    resized = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    video = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
    return [video[i : i + CLIP_LEN][None] for i in range(0, len(frames) - CLIP_LEN + 1, CLIP_LEN - 1)]


def best_rate(run_once, pairs_per_run: int, runs: int, repeats: int) -> float:
    """Best pairs/s over ``repeats`` timings of ``runs`` calls (after one warm-up call)."""
    run_once(0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(runs):
            run_once(i)
        best = min(best, time.perf_counter() - start)
    return pairs_per_run * runs / best


def time_pytorch(model: MotionNet, clips: list[torch.Tensor], threads: int, repeats: int) -> float:
    set_threads(threads)

    def run(i: int) -> None:
        with torch.inference_mode():
            model(clips[i % len(clips)])

    return best_rate(run, CLIP_LEN - 1, RUNS, repeats)


def time_onnxruntime(session, arrays: list[np.ndarray], repeats: int) -> float:
    def run(i: int) -> None:
        session.run(["flows"], {"frames": arrays[i % len(arrays)]})

    return best_rate(run, CLIP_LEN - 1, RUNS, repeats)


def max_difference(model: MotionNet, session, clips: list[torch.Tensor]) -> float:
    worst = 0.0
    for clip in clips:
        with torch.inference_mode():
            expected = model(clip).flows.numpy()
        worst = max(worst, float(np.abs(run_onnx(session, clip)["flows"] - expected).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="weights (default: random small model)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per entry; the best is kept")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    if args.weights:
        model = load_weights(args.weights)
    else:
        torch.manual_seed(0)
        model = build_motion_net("small").eval()
    source = read_frames(13)  # 4 clips of T=4 sharing their end frames
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_onnx(model, Path(folder) / "motion.onnx", clip_len=CLIP_LEN)
        for height, width in SIZES:
            clips = make_clips(source, height, width)
            arrays = [np.ascontiguousarray(clip.numpy()) for clip in clips]
            for threads in THREADS:
                session = onnx_session(onnx_path, threads=threads)
                diff = max_difference(model, session, clips)
                for engine, rate in (
                    ("pytorch", time_pytorch(model, clips, threads, args.repeats)),
                    ("onnxruntime", time_onnxruntime(session, arrays, args.repeats)),
                ):
                    rows.append(
                        {"engine": engine, "height": height, "width": width, "threads": threads,
                         "pairs_per_s": rate, "ms_per_pair": 1000.0 / rate, "max_flow_diff_px": diff}
                    )  # fmt: skip
    load_after = os.getloadavg()

    print(f"Frame pairs/s (best of {args.repeats}); clips of T={CLIP_LEN} (3 pairs/forward), batch 1; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")  # fmt: skip
    print("| W×H | threads | PyTorch pairs/s | onnxruntime pairs/s | ORT / PyTorch | max abs Δflow (px) |")
    print("|---|---|---|---|---|---|")
    for torch_row, ort_row in zip(rows[::2], rows[1::2], strict=True):
        print(f"| {torch_row['width']}×{torch_row['height']} | {torch_row['threads']} | "
              f"{torch_row['pairs_per_s']:.1f} | {ort_row['pairs_per_s']:.1f} | "
              f"{ort_row['pairs_per_s'] / torch_row['pairs_per_s']:.2f}× | "
              f"{ort_row['max_flow_diff_px']:.1e} |")  # fmt: skip

    result = {
        "benchmark": "onnx_speed",
        "clip_len": CLIP_LEN,
        "repeats": args.repeats,
        "weights": str(args.weights) if args.weights else "random small (seed 0)",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "config": model.config.to_dict(),
        "rows": rows,
    }
    write_json_atomic(args.output, result, indent=2, make_parents=True)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
