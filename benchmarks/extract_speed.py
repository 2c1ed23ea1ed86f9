"""End-to-end extraction speed on real video: decode + motion + write flow JPEGs, through one writer.

Runs ``scattermotion.extract`` on real clips (vtest, bikes) at two frame sizes (short side 224, and
256×340 as TSN uses) for our network and OpenCV's TV-L1 and DIS, all in the same run, and prints a Markdown
table of frame pairs per second with ratios against TV-L1 and where the time goes (decode / model / write).
TV-L1 is slow, so it gets fewer frames. Ours runs ``--weights`` or the packaged default model. JSON goes to
``benchmarks/results/extract_speed.json``.

    python benchmarks/extract_speed.py [--frames 120] [--tvl1-frames 24] [--threads N] [--device D]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from scattermotion.data.fetched import ensure_data, real_video
from scattermotion.data.video import open_video
from scattermotion.estimator import DEFAULT_WEIGHTS
from scattermotion.extract import ExtractOptions, extract
from scattermotion.io.atomic import write_json_atomic
from scattermotion.methods import build_estimators, method_label
from scattermotion.reporting import machine_info
from scattermotion.threads import set_threads

RESULTS = Path(__file__).resolve().parent / "results" / "extract_speed.json"
VIDEOS = ("vtest", "bikes")
SIZES = {"short side 224": {"short_side": 224}, "340x256": {"resize": (340, 256)}}  # W x H


def run_one(
    video: Path, method: str, size: dict, frames: int, out: Path, estimator, weights, device, prefetch
) -> dict:
    options = ExtractOptions(
        out_dir=out,
        format="jpg",
        method=method,
        weights=weights if method == "ours" else None,
        max_frames=frames,
        device=device if method == "ours" else "cpu",
        prefetch=prefetch,
        progress=False,
        **size,
    )
    summary = extract([video], options, estimator=estimator)
    result = summary.results[0]
    if result.status != "done":
        raise RuntimeError(f"{video.name} / {method}: {result.reason}")
    return {"pairs": result.pairs, "seconds": result.seconds, "timings": result.timings}


def measure(
    video: Path, method: str, size: dict, frames: int, scratch: Path, estimator, weights, device
) -> dict:
    """Two runs of the same frames: decoding in line (its decode / model / write split is exact) and with the
    default background decoding (the end-to-end speed users get)."""
    default_prefetch = ExtractOptions(out_dir=scratch).prefetch
    # One untimed warm-up pair, so one-time set-up (threads, allocations) is not measured.
    run_one(video, method, size, 2, scratch / "warmup", estimator, weights, device, 0)
    inline = run_one(video, method, size, frames, scratch / "inline", estimator, weights, device, 0)
    piped = run_one(
        video, method, size, frames, scratch / "prefetch", estimator, weights, device, default_prefetch
    )
    source = open_video(video, **size)
    return {
        "frame_size": f"{source.width}x{source.height}",
        "pairs": piped["pairs"],
        "seconds": piped["seconds"],
        "pairs_per_s": piped["pairs"] / piped["seconds"],
        "inline_pairs_per_s": inline["pairs"] / inline["seconds"],
        "inline_seconds": inline["seconds"],
        "inline_timings": inline["timings"],
        "prefetch": default_prefetch,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120, help="frames per video for ours and DIS")
    parser.add_argument("--tvl1-frames", type=int, default=24, help="frames per video for TV-L1 (slow)")
    parser.add_argument("--device", default="cpu", help="device for ours")
    parser.add_argument("--weights", default=None, help="weights for ours (default: packaged)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and OpenCV threads (default: theirs)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    set_threads(args.threads)  # the same budget for every method

    ensure_data()
    rows = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        weights = Path(args.weights) if args.weights else DEFAULT_WEIGHTS
        estimators = build_estimators(("ours", "tvl1", "dis"), weights, device=args.device)
        for video_name in VIDEOS:
            video = real_video(video_name)
            for size_name, size in SIZES.items():
                for method in ("ours", "dis", "tvl1"):
                    frames = args.tvl1_frames if method == "tvl1" else args.frames
                    row = measure(
                        video, method, size, frames, scratch, estimators[method], weights, args.device
                    )
                    row.update(
                        video=video_name,
                        size=size_name,
                        method=method,
                        label=method_label(method, args.weights),
                    )
                    rows.append(row)
                    print(
                        f"  {video_name:6s} {size_name:15s} {method:5s} {row['pairs_per_s']:8.2f} pairs/s",
                        file=sys.stderr,
                    )

    for row in rows:
        tvl1 = next(
            r
            for r in rows
            if r["method"] == "tvl1" and r["video"] == row["video"] and r["size"] == row["size"]
        )
        row["vs_tvl1"] = row["pairs_per_s"] / tvl1["pairs_per_s"]

    print(markdown(rows))
    record = {
        "benchmark": "extract_speed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            **machine_info(),
            "device": args.device,
            "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "frames": {"ours_and_dis": args.frames, "tvl1": args.tvl1_frames},
        "rows": rows,
    }
    write_json_atomic(args.output, record, make_parents=True)
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


def markdown(rows: list[dict]) -> str:
    lines = [
        "| video | resize | W×H | method | pairs | pairs/s | × TV-L1 | in line | decode | model | write |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["inline_timings"]
        total = r["inline_seconds"]
        share = {k: f"{100 * t.get(k, 0.0) / total:.0f} %" for k in ("decode", "model", "write")}
        lines.append(
            f"| {r['video']} | {r['size']} | {r['frame_size']} | {r['label']} | {r['pairs']} | "
            f"{r['pairs_per_s']:.2f} | {r['vs_tvl1']:.1f} | {r['inline_pairs_per_s']:.2f} | "
            f"{share['decode']} | {share['model']} | {share['write']} |"
        )
    lines.append("")
    lines.append(
        "pairs/s: end to end (decode + motion + write flow_x/flow_y JPEGs), frames decoded in a background"
        " thread (the default); × TV-L1: that over TV-L1's at the same video and size. in line: pairs/s with"
        " decoding in line, whose seconds split into decode / model / write (the rest: opening, set-up)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
