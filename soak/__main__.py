"""python -m soak --cycles 50 --seed 1   (make soak CYCLES=50)

Runs the pipeline for many cycles on a fresh local stack with faults injected at random
points, then checks that the warehouse equals what the source's history implies and that
ledger, manifests and objects agree. Prints one line per cycle and a summary line; exits 1
if there is any mismatch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soak.plan import FAULT_KINDS, SoakPlan
from soak.run import run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    defaults = SoakPlan()
    parser.add_argument(
        "--cycles", type=int, default=defaults.cycles, help="cycles before the final clean one"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="same seed, same run")
    parser.add_argument("--scale", type=float, default=defaults.scale, help="totesys seed scale")
    parser.add_argument(
        "--fault-rate", type=float, default=defaults.fault_rate,
        help="chance of a fault in a cycle, once every kind has had one",
    )  # fmt: skip
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help="comma-separated kinds to inject (default: all)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".local/soak"),
        help="the soak's own stack (wiped first)",
    )
    args = parser.parse_args(argv)
    try:
        plan = SoakPlan(
            cycles=args.cycles,
            seed=args.seed,
            scale=args.scale,
            fault_rate=args.fault_rate,
            kinds=tuple(k.strip() for k in args.faults.split(",") if k.strip()),
        )
    except ValueError as error:
        parser.error(str(error))
    report = run_soak(plan, args.state_dir, log=lambda line: print(line, flush=True))
    print(report.summary(), flush=True)
    return 1 if report.verdict.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
