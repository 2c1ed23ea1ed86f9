"""Inference speed and memory of MotionNet against OpenCV's TV-L1 and DIS-medium, measured in one run on real
frames (the timing core is :mod:`scattermotion.benchmark`, the same as ``scattermotion benchmark``).

    python benchmarks/model_speed.py [--repeats 3] [--rounds 2] [--no-large]
        [--output benchmarks/results/model_speed.json]

Prints a Markdown table (frame pairs/s, ms/pair, ratios to TV-L1 and DIS, peak RSS at 224×224 and 256×340,
1 thread and all cores) and writes the numbers as JSON. Where the CPU has native bf16, ``ours-small-bf16`` is
the small preset under bf16 autocast (``MotionEstimator(..., precision="bf16")``). Ours runs the small and
large presets with random weights (speed does not depend on the weight values) through
``MotionEstimator.estimate_clip`` on clips of T=4 frames (3 pairs per forward, batch 1), ``ours`` (the
packaged default model with its own inference settings: refinement passes and test-time averaging cost time
the plain presets do not show) and ``ours-refined`` (the packaged model, then variational refinement on each
pair); each method is
timed in a fresh process; each number is the best of ``--repeats`` passes, and of ``--rounds`` runs of the
whole sweep one after the other (this machine's slow phases last minutes: in two runs a day apart the same
random-weights preset read 99.9 and 62.1 pairs/s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scattermotion.benchmark import DEFAULT_SIZES, parse_threads, run_benchmark, to_markdown
from scattermotion.data.fetched import ensure_data
from scattermotion.io.atomic import write_json_atomic
from scattermotion.methods import ACCURATE, REFINED
from scattermotion.model import MotionConfig
from scattermotion.precision import cpu_bf16_flags

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "model_speed.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per entry; the best is kept")
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of the whole sweep; each entry's best is kept"
    )
    parser.add_argument("--no-large", action="store_true", help="skip the large (GPU) preset")
    parser.add_argument("--threads", default="1,all", help="thread counts, e.g. 1,all")
    parser.add_argument("--device", default="auto", help="device for ours: auto | cpu | cuda")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    ensure_data()
    # ours-refined: the packaged model plus its variational refinement (the refinement's cost is in the
    # frames, not the weights, so the packaged model stands in for any trained small network)
    methods = ["tvl1", "dis", "ours", ACCURATE, "ours-small", REFINED] + (
        [] if args.no_large else ["ours-large"]
    )
    if cpu_bf16_flags():  # bf16 inference (MotionEstimator(precision="bf16")) where the CPU runs it natively
        methods.append("ours-small-bf16")
    report = run_benchmark(
        methods,
        DEFAULT_SIZES,
        parse_threads(args.threads),
        device=args.device,
        repeats=args.repeats,
        rounds=args.rounds,
        progress=lambda line: print(line, file=sys.stderr),
    )
    report["benchmark"] = "model_speed"
    report["configs"] = {
        "ours-small": MotionConfig.small().to_dict(),
        "ours-large": MotionConfig.large().to_dict(),
    }
    print(to_markdown(report))
    write_json_atomic(args.output, report, make_parents=True)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
