"""What a soak run does: how many cycles, and which cycle gets which fault.

The schedule comes from the seed alone, so a failing run can be repeated exactly. Every
kind is injected at least once when there are enough cycles (each at a random cycle), and
any other cycle gets a random kind with probability `fault_rate`: a kind is never starved
by chance in a short run, and a long run still mixes them at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

INGEST_KILLED_BEFORE_MANIFEST = "ingest_killed_before_manifest"
INGEST_KILLED_AFTER_MANIFEST = "ingest_killed_after_manifest"
TRANSFORM_KILLED = "transform_killed"
LOAD_KILLED_MID_TRANSACTION = "load_killed_mid_transaction"
STAGE_KILLED_AT_RANDOM_MOMENT = "stage_killed_at_random_moment"
S3_DOWN = "s3_down"
DATABASE_RESTARTED = "database_restarted"
CONNECTION_TERMINATED = "connection_terminated"
CONCURRENT_STAGE = "concurrent_stage"  # a second process of the stage, at a random moment
PAUSED_STAGE = "paused_stage"  # SIGSTOP at a step, another process takes over, SIGCONT
# damage from outside (soak.damage), each answered with a documented command
POISON_ROW = "poison_row"  # an impossible date in a fact source row
LOST_PROCESSED_FILE = "lost_processed_file"  # a processed parquet deleted or truncated
GARBAGE_STATE = "garbage_state"  # a state object overwritten with bytes that are not JSON
WAREHOUSE_DAMAGE = "warehouse_damage"  # fact rows deleted, a dimension value defaced
DAMAGE_KINDS = (POISON_ROW, LOST_PROCESSED_FILE, GARBAGE_STATE, WAREHOUSE_DAMAGE)

FAULT_KINDS: tuple[str, ...] = (
    INGEST_KILLED_BEFORE_MANIFEST,
    INGEST_KILLED_AFTER_MANIFEST,
    TRANSFORM_KILLED,
    LOAD_KILLED_MID_TRANSACTION,
    STAGE_KILLED_AT_RANDOM_MOMENT,
    S3_DOWN,
    DATABASE_RESTARTED,
    CONNECTION_TERMINATED,
    CONCURRENT_STAGE,
    PAUSED_STAGE,
    *DAMAGE_KINDS,
)


@dataclass(frozen=True)
class SoakPlan:
    cycles: int = 50
    seed: int = 1
    scale: float = 0.05  # totesys seed scale: about 800 payments, enough history to join
    fault_rate: float = 0.5  # chance that a cycle beyond the first of each kind has a fault
    kinds: tuple[str, ...] = FAULT_KINDS
    late_rate: float = 0.6  # chance that rows commit late (inside the overlap) before a cycle
    max_hours: float = 30.0  # simulated business per cycle: uniform in [1, max_hours] hours

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(
                f"unknown fault kind(s) {', '.join(unknown)}: known are {', '.join(FAULT_KINDS)}"
            )
        if self.cycles < 1:
            raise ValueError("a soak needs at least one cycle")


def schedule(plan: SoakPlan) -> dict[int, str]:
    """Cycle number (1-based) -> fault kind; cycles not in the map run clean."""
    rng = random.Random(f"{plan.seed}:schedule")
    cycles = list(range(1, plan.cycles + 1))
    kinds = list(plan.kinds)
    rng.shuffle(kinds)
    chosen = sorted(rng.sample(cycles, min(len(kinds), len(cycles))))
    faults = dict(zip(chosen, kinds, strict=False))
    for cycle in cycles:
        if cycle not in faults and kinds and rng.random() < plan.fault_rate:
            faults[cycle] = rng.choice(kinds)
    return faults
