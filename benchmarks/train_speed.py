"""Training speed of a recipe on this machine, every optimisation switchable, "all off" beside "all on".

    python benchmarks/train_speed.py [--steps 6] [--warmup 2] [--threads 2] [--output PATH.json]

The recipe is the default model's stage-2 one (small preset, 224×320 crops, batch 4 of T=4 clips, half of
them synthetic, an EPE term of weight 0.05 on those) on the training-side videos. The variants and phases
are described in :mod:`scattermotion.training.speed`; bf16 is measured only where the CPU has it natively.
"all off" and "all on" are then timed again through the loop's own step function with its DataLoader
worker rendering ahead, as a run sees them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from scattermotion.data.fetched import ensure_data
from scattermotion.io.atomic import write_json_atomic
from scattermotion.precision import cpu_bf16_flags
from scattermotion.reporting import machine_info
from scattermotion.threads import set_threads
from scattermotion.training.speed import (
    OPTIMISATIONS,
    VIDEOS,
    recipe,
    time_pipelined,
    time_variant,
    to_markdown,
)

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "train_speed.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (decoding, allocator)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    ensure_data()
    set_threads(args.threads)
    bf16 = bool(cpu_bf16_flags())
    available = [o for o in OPTIMISATIONS if o != "bf16" or bf16]
    variants = [("all off", set())] + [(f"+ {o}", {o}) for o in available] + [("all on", set(available))]
    config = recipe(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:  # the scene-cut cache only
        for name, on in variants:
            row = time_variant(on, config, Path(run_dir), args.steps, args.warmup)
            row["name"] = name
            rows.append(row)
            print(f"{name}: {row['steps_per_s']:.3f} steps/s", file=sys.stderr)
        pipelined = {}
        for name, on in (variants[0], variants[-1]):
            pipelined[name] = round(time_pipelined(on, config, Path(run_dir), args.steps, args.warmup), 4)
            print(f"{name}, real loop: {pipelined[name]:.3f} steps/s", file=sys.stderr)
    report = {
        "benchmark": "train_speed",
        "recipe": {k: v for k, v in config.to_dict().items() if k != "sources"},
        "videos": list(VIDEOS),
        "steps": args.steps,
        "warmup": args.warmup,
        "cpu_bf16_features": list(cpu_bf16_flags()),
        "bf16_measured": bf16,
        "machine": machine_info(),
        "variants": rows,
        "pipelined": pipelined,
    }
    table = to_markdown(report)
    if not bf16:
        table += "\n\nbf16: no native bf16 on this CPU (AVX512-BF16, AMX-BF16): not measured."
    print(table)
    write_json_atomic(args.output, report, make_parents=True)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
