"""bf16 against fp32 training: the same short schedule in both precisions, over several seeds, in one run.

    python benchmarks/precision_parity.py [--steps 150] [--seeds 1,2] [--init default] [--threads 2]
        [--output PATH.json]

Each run is a real ``scattermotion train`` run (:func:`scattermotion.training.train`) from random weights
(or, with ``--init``, fine-tuning given weights at lr 1e-4) on the training-speed recipe
(:func:`scattermotion.training.speed.recipe`, with the per-sample objective of the current default:
full-weight EPE on synthetic clips, photometric on real ones), validated once at the end on the synthetic
validation set (its own seed, never evaluation data). bf16 passes when its mean validation EPE lies within
the fp32 runs' seed-to-seed spread (max - min) of the fp32 mean. bf16 runs only where the CPU has native
bf16 (AVX512-BF16 or AMX-BF16); elsewhere the table says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scattermotion.data.fetched import ensure_data
from scattermotion.estimator import DEFAULT_WEIGHTS
from scattermotion.io.atomic import write_json_atomic
from scattermotion.precision import cpu_bf16_flags
from scattermotion.reporting import machine_info
from scattermotion.threads import set_threads
from scattermotion.training.parity import run_once, summarise, to_markdown
from scattermotion.training.speed import VIDEOS

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "precision_parity.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", default="1,2", help="comma-separated training seeds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--init", default=None, help="fine-tune these weights ('default': the packaged model) at lr 1e-4"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    ensure_data()
    set_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    init = str(DEFAULT_WEIGHTS) if args.init == "default" else args.init
    precisions = ["fp32", "bf16"] if cpu_bf16_flags() else ["fp32"]
    runs = []
    for seed in seeds:
        for precision in precisions:
            runs.append(run_once(precision, seed, args.steps, args.threads, init))
            print(f"{precision} seed {seed}: validation EPE {runs[-1]['synthetic_epe']:.3f}", file=sys.stderr)
    report = {
        "benchmark": "precision_parity",
        "steps": args.steps,
        "init": args.init,
        "videos": list(VIDEOS),
        "cpu_bf16_features": list(cpu_bf16_flags()),
        "machine": machine_info(),
        "runs": runs,
        "summary": summarise(runs),
    }
    print(to_markdown(report))
    write_json_atomic(args.output, report, make_parents=True)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
