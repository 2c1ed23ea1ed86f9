"""Inference speed of MotionNet against OpenCV's TV-L1 and DIS-medium, measured in one run on real frames.

    python benchmarks/model_speed.py [--repeats 3] [--no-large] [--output benchmarks/results/model_speed.json]

Prints a Markdown table (frame pairs/s and ms/pair at 224×224 and 256×340, 1 and 2 threads) and writes the
numbers as JSON. Ours runs clips of T=4 frames (3 pairs per forward, batch 1) under ``torch.inference_mode``
on float tensors already in memory; the baselines run on grayscale uint8 frames. Each number is the best of
``--repeats`` timed runs (the machine may be shared: the best run is the least disturbed one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from scattermotion.data.fetched import real_video
from scattermotion.model import MotionConfig, build_motion_net
from scattermotion.padding import InputPadder

SIZES = ((224, 224), (256, 340))  # H×W
THREADS = (1, 2)
CLIP_LEN = 4
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "model_speed.json"


def read_frames(count: int) -> list[np.ndarray]:
    """``count`` consecutive RGB frames of OpenCV's vtest.avi (real pedestrian footage), from frame 100."""
    path = real_video("vtest")
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if len(frames) < count:
        raise SystemExit(f"{path}: could read only {len(frames)} frames")
    return frames


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


def time_ours(preset: str, frames: list[np.ndarray], threads: int, runs: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_motion_net(preset).eval()
    height, width = frames[0].shape[:2]
    padder = InputPadder(height, width, net.stride)
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    clips = [video[i : i + CLIP_LEN][None] for i in range(0, len(frames) - CLIP_LEN + 1, CLIP_LEN - 1)]

    def run(i: int) -> None:
        with torch.inference_mode():
            (clip,) = padder.pad(clips[i % len(clips)])
            padder.unpad(net(clip).flows)

    return best_rate(run, CLIP_LEN - 1, runs, repeats)


def time_opencv(make, frames: list[np.ndarray], threads: int, runs: int, repeats: int) -> float:
    cv2.setNumThreads(threads)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    algorithm = make()

    def run(i: int) -> None:
        j = i % (len(gray) - 1)
        algorithm.calc(gray[j], gray[j + 1], None)

    return best_rate(run, 1, runs, repeats)


def atomic_write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per entry; the best is kept")
    parser.add_argument("--no-large", action="store_true", help="skip the large (GPU) preset")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    source = read_frames(13)  # 4 clips of T=4 sharing their end frames
    methods = [("ours-small", "small", 10)] + ([] if args.no_large else [("ours-large", "large", 2)])
    baselines = {
        "TV-L1": (cv2.optflow.DualTVL1OpticalFlow_create, 3),  # ~2 pairs/s: time a few pairs only
        "DIS-medium": (lambda: cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM), 30),
    }
    load_before = os.getloadavg()
    rows = []
    for height, width in SIZES:
        frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in source]
        for threads in THREADS:
            rates = {}
            for name, (make, runs) in baselines.items():
                rates[name] = time_opencv(make, frames, threads, runs, args.repeats)
            for name, preset, runs in methods:
                rates[name] = time_ours(preset, frames, threads, runs, args.repeats)
            for name, rate in rates.items():
                row = {"method": name, "height": height, "width": width, "threads": threads,
                       "pairs_per_s": rate, "ms_per_pair": 1000.0 / rate}  # fmt: skip
                if name.startswith("ours"):
                    row["vs_tvl1"] = rate / rates["TV-L1"]
                    row["vs_dis"] = rate / rates["DIS-medium"]
                rows.append(row)

    print(f"Frame pairs/s (best of {args.repeats}); ours: clips of T={CLIP_LEN} (3 pairs/forward), batch 1; "
          f"load average before: {load_before[0]:.2f}\n")  # fmt: skip
    print("| method | H×W | threads | pairs/s | ms/pair | ours / TV-L1 | ours / DIS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratios = (f"{r['vs_tvl1']:.1f}×", f"{r['vs_dis']:.2f}×") if "vs_tvl1" in r else ("", "")
        print(f"| {r['method']} | {r['height']}×{r['width']} | {r['threads']} | {r['pairs_per_s']:.1f} | "
              f"{r['ms_per_pair']:.1f} | {ratios[0]} | {ratios[1]} |")  # fmt: skip

    atomic_write_json(
        args.output,
        {
            "benchmark": "model_speed",
            "clip_len": CLIP_LEN,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "configs": {
                "ours-small": MotionConfig.small().to_dict(),
                "ours-large": MotionConfig.large().to_dict(),
            },
            "rows": rows,
        },
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
