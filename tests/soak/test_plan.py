"""The fault schedule: reproducible from the seed, and no kind starved in a short run."""

from __future__ import annotations

import pytest

from soak.plan import FAULT_KINDS, S3_DOWN, SoakPlan, schedule


def test_every_kind_gets_a_cycle_and_the_seed_decides_which() -> None:
    plan = SoakPlan(cycles=len(FAULT_KINDS), seed=4, fault_rate=0.0)

    faults = schedule(plan)

    assert sorted(faults.values()) == sorted(FAULT_KINDS)
    assert {"concurrent_stage", "paused_stage"} <= set(FAULT_KINDS)
    assert set(faults) <= set(range(1, len(FAULT_KINDS) + 1))
    assert schedule(plan) == faults
    assert schedule(SoakPlan(cycles=10, seed=5, fault_rate=0.0)) != faults


def test_the_fault_rate_adds_random_faults_of_the_chosen_kinds() -> None:
    assert len(schedule(SoakPlan(cycles=50, fault_rate=1.0))) == 50
    only = schedule(SoakPlan(cycles=20, fault_rate=0.5, kinds=(S3_DOWN,)))
    assert set(only.values()) == {S3_DOWN} and 1 < len(only) < 20


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        SoakPlan(kinds=("meteor_strike",))
