"""The soak loop: a fresh local stack, many cycles with faults, one clean cycle, the verdict.

Each cycle is what the scheduler does every few minutes: totesys changes (late commits,
then simulated business), then ingest, transform and load, each as its own process. A
failed stage ends the cycle, as a failed task ends a DAG run; the next cycle simply runs
again, nobody repairs anything. After every ingest the soak lists the ingestion manifests:
if a batch completed (its manifest exists, even when the process died right after writing
it), the source's current fact versions are added to the expectation. The source does not
change while a cycle's stages run, so that is exactly what the batch's snapshot saw.
Versions that lived only between two successful extracts are, rightly, never expected.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.stack import LocalStack, StackEndpoints
from etl import layout
from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.storage import ObjectStore
from simulator.expectations import Row, current_fact_versions
from simulator.seed import SeedPlan, seed_totesys
from soak import plan as kinds
from soak.damage import Damager
from soak.faults import FaultRecord, Injector, stage_for
from soak.plan import SoakPlan, schedule
from soak.proxy import TcpProxy
from soak.source import Business
from soak.stages import REPO_ROOT, STAGES, StageOutcome, run_cli
from soak.verify import Lake, Verdict, verify

# settings a developer's shell may hold that would change what the stages do
PIPELINE_ENV = (
    "TOTESYS_TABLES",
    "INGEST_OVERLAP_SECONDS",
    "WAREHOUSE_SCHEMA",
    "WAREHOUSE_NAME_MAP",
    "LEASE_WAIT_SECONDS",
    "LEASE_TIMEOUT_SECONDS",
)
SOAK_LEASE_TIMEOUT = 5  # seconds


@dataclass(frozen=True)
class CycleRecord:
    number: int
    events: Counter[str]
    stages: tuple[StageOutcome, ...]
    fault: FaultRecord | None

    def describe(self) -> str:
        changes = sum(self.events.values())
        late = sum(n for kind, n in self.events.items() if kind.startswith("late_"))
        stages = " ".join(f"{s.stage}={s.describe()}" for s in self.stages)
        fault = f" | fault {self.fault.describe()}" if self.fault else ""
        return f"cycle {self.number:3d}: {changes} source changes ({late} late) | {stages}{fault}"


@dataclass
class SoakReport:
    plan: SoakPlan
    cycles: list[CycleRecord] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    seconds: float = 0.0

    @property
    def faults(self) -> Counter[str]:
        """Injected faults by kind (a kill that came after the stage had finished is not one)."""
        return Counter(c.fault.kind for c in self.cycles if c.fault and c.fault.injected)

    @property
    def missed(self) -> Counter[str]:
        """Faults whose moment never came (retried at the next cycle without a fault)."""
        return Counter(c.fault.kind for c in self.cycles if c.fault and not c.fault.injected)

    @property
    def failed_stages(self) -> int:
        return sum(1 for c in self.cycles for s in c.stages if not s.ok)

    def summary(self) -> str:
        faults = ", ".join(f"{kind}={n}" for kind, n in sorted(self.faults.items())) or "none"
        late = sum(n for c in self.cycles for k, n in c.events.items() if k.startswith("late_"))
        scheduled = len(self.cycles) - 1  # the last one is the final clean cycle
        return (
            f"soak: {scheduled} cycles + 1 clean (seed {self.plan.seed}); "
            f"faults injected {sum(self.faults.values())} ({faults}); "
            f"missed {sum(self.missed.values())}; "
            f"failed stages {self.failed_stages}; late commits {late}; "
            f"rows checked {self.verdict.rows_checked}; mismatches {self.verdict.mismatches}; "
            f"{self.seconds:.0f}s"
        )


class Soak:
    def __init__(self, plan: SoakPlan, endpoints: StackEndpoints, proxy: TcpProxy) -> None:
        self.plan = plan
        self.endpoints = endpoints
        self.proxy = proxy
        self.rng = random.Random(f"{plan.seed}:soak")
        self.injector = Injector(endpoints, proxy, random.Random(f"{plan.seed}:faults"))
        self.business = Business(endpoints.totesys_db_url, plan.seed)
        self.facts: dict[str, set[Row]] = {}
        self.lake = Lake(
            endpoints.totesys_db_url,
            endpoints.warehouse_db_url,
            endpoints.s3_client(),
            endpoints.ingestion_bucket,
            endpoints.processed_bucket,
        )
        inherited = {k: v for k, v in os.environ.items() if k not in PIPELINE_ENV}
        self.env = {
            **inherited,
            **endpoints.as_env(),
            "AWS_ENDPOINT_URL": proxy.url,  # the pipeline's S3 is the one a fault can cut
            "PYTHONPATH": str(REPO_ROOT),
            # a paused holder loses its lease after this long: short, so a paused_stage
            # fault costs seconds, not the production default
            "LEASE_TIMEOUT_SECONDS": str(SOAK_LEASE_TIMEOUT),
        }
        self.damager = Damager(self.lake, self.env, random.Random(f"{plan.seed}:damage"))

    def cycle(self, number: int, fault_kind: str | None) -> CycleRecord:
        if fault_kind in kinds.DAMAGE_KINDS:
            return self.damaged_cycle(number, fault_kind)
        events = self.business_hours(number)
        return self.stages(number, events, fault_kind)

    def business_hours(self, number: int) -> Counter[str]:
        """What totesys does between two cycles, and the correction of old poisoned rows."""
        events = self.business.cycle(self.rng, self.plan.late_rate, self.plan.max_hours)
        if self.damager.correct_poisoned(number, self.business.clock):
            events["poisoned_row_corrected"] += 1
        return events

    def damaged_cycle(self, number: int, kind: str) -> CycleRecord:
        """Damage before the stages (after them for the warehouse), then the answer."""
        events = self.business_hours(number)
        before: dict[str, Callable[[], FaultRecord]] = {
            kinds.POISON_ROW: lambda: self.damager.poison(number, self.business.clock),
            kinds.LOST_PROCESSED_FILE: lambda: self.damager.lose_processed_file(number),
            kinds.GARBAGE_STATE: lambda: self.damager.garble_state(number),
        }
        fault = before[kind]() if kind in before else None
        record = self.stages(number, events, None)
        if kind == kinds.WAREHOUSE_DAMAGE:
            loaded = all(s.ok for s in record.stages)
            fault = self.damager.damage_warehouse(number) if loaded else None
            if fault is not None and fault.injected:
                fault = self.damager.replay(fault)
        elif fault is not None and fault.injected and kind == kinds.POISON_ROW:
            fault = self.damager.flowed(fault, record.stages)
        elif fault is not None and fault.injected:
            fault = self.damager.repair(fault, record.stages)
        if fault is None:
            fault = FaultRecord(number, kind, "-", "-", False, "the load did not succeed")
        return CycleRecord(number, events, record.stages, fault)

    def stages(self, number: int, events: Counter[str], fault_kind: str | None) -> CycleRecord:
        target = stage_for(fault_kind, self.rng) if fault_kind else None
        outcomes: list[StageOutcome] = []
        fault: FaultRecord | None = None
        for stage in STAGES:
            before = self._manifests()
            if stage == target and fault_kind:
                outcome, fault = self.injector.run(number, fault_kind, stage, self.env)
            else:
                outcome = run_cli(stage, self.env)
            outcomes.append(outcome)
            if stage == "ingest" and self._manifests() - before:
                self._expect_current_versions()  # a batch completed: what it saw is expected
            if not outcome.ok:
                break  # as a failed task ends its DAG run; the next cycle runs again
        return CycleRecord(number, events, tuple(outcomes), fault)

    def _manifests(self) -> set[str]:
        return set(
            ObjectStore(self.lake.s3, self.lake.ingestion_bucket).keys(layout.MANIFEST_PREFIX)
        )

    def _expect_current_versions(self) -> None:
        for table, versions in current_fact_versions(self.endpoints.totesys_db_url).items():
            self.facts.setdefault(table, set()).update(versions)


def _clear(stack: LocalStack) -> None:
    """Stop and remove a previous soak's stack: every run starts from nothing. A directory
    that is not a stack's is refused rather than deleted."""
    state_dir = stack.state_dir
    if state_dir.exists() and any(state_dir.iterdir()) and not stack.state_file.exists():
        raise SystemExit(
            f"{state_dir} is not empty and holds no local stack; choose another --state-dir"
        )
    stack.down()
    shutil.rmtree(state_dir, ignore_errors=True)


def run_soak(plan: SoakPlan, state_dir: Path, log: Callable[[str], None] = print) -> SoakReport:
    """A fresh stack in `state_dir` (anything there is removed), the cycles, the verdict."""
    started = time.perf_counter()
    stack = LocalStack(state_dir)
    _clear(stack)
    report = SoakReport(plan)
    endpoints = stack.up()
    proxy = TcpProxy(endpoints.s3_port)
    try:
        proxy.start()
        seed_totesys(endpoints.totesys_db_url, SeedPlan(scale=plan.scale, seed=plan.seed))
        init_warehouse(Settings.from_env(endpoints.as_env()))
        soak = Soak(plan, endpoints, proxy)
        faults, missed = schedule(plan), list[str]()
        for number in range(1, plan.cycles + 1):
            kind = faults.get(number) or (missed.pop(0) if missed else None)
            record = soak.cycle(number, kind)
            if record.fault and not record.fault.injected:
                missed.append(record.fault.kind)  # e.g. a kill that came after the exit
            report.cycles.append(record)
            log(record.describe())
        final = soak.cycle(plan.cycles + 1, None)  # one clean cycle, then the verdict
        report.cycles.append(final)
        log(final.describe())
        report.verdict = verify(soak.lake, soak.facts)
        for record in report.cycles:  # a process that met another of its stage must end well
            if record.fault is not None and record.fault.companion_failed:
                report.verdict.fail(f"cycle {record.number}: {record.fault.describe()}")
        failed = [f"{o.stage}: {o.describe()}" for o in final.stages if not o.ok]
        if failed:  # with no fault, every stage must succeed
            report.verdict.fail(f"the final clean cycle failed: {'; '.join(failed)}")
    finally:
        proxy.close()
        stack.down()
    report.seconds = time.perf_counter() - started
    for finding in report.verdict.findings:
        log(f"MISMATCH {finding}")
    return report
