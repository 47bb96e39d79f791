"""A short soak: every kind of fault at least once, on its own local stack, through the
real stage processes; afterwards the warehouse equals the SQL expectation exactly and
ledger, manifests and objects agree (the long run is `python -m soak --cycles 50`)."""

from __future__ import annotations

from pathlib import Path

from devstack.stack import LocalStack
from soak.plan import DAMAGE_KINDS, FAULT_KINDS, SoakPlan
from soak.run import run_soak


def test_a_short_soak_with_every_kind_of_fault_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    # every kind once at a random cycle, no other faults: three cycles left to retry a kill
    # that came after its stage had already finished
    plan = SoakPlan(cycles=18, seed=7, fault_rate=0.0)

    report = run_soak(plan, tmp_path / "soak", log=lines.append)

    assert report.verdict.mismatches == 0, "\n".join(lines)
    assert set(report.faults) == set(FAULT_KINDS), report.summary()
    assert report.failed_stages >= 4, "the kills alone fail four stages"
    assert report.verdict.rows_checked > 3000, "the whole warehouse was compared"
    late = sum(n for c in report.cycles for k, n in c.events.items() if k.startswith("late_"))
    assert late > 0, "rows committed late inside the overlap were part of the history"
    companions = [c.fault for c in report.cycles if c.fault and c.fault.companion is not None]
    assert {f.kind for f in companions} == {"concurrent_stage", "paused_stage", *DAMAGE_KINDS}, (
        report.summary()
    )
    assert all(f.companion is not None and f.companion.ok_or_lease for f in companions)
    assert report.cycles[-1].fault is None and all(s.ok for s in report.cycles[-1].stages)
    assert "mismatches 0" in report.summary()
    assert LocalStack(tmp_path / "soak").running() is None, "the soak stopped its stack"
