"""How each kind of fault is injected into one stage of one cycle.

Kills are real SIGKILLs of the stage's process: at a chosen step (the child stops at every
step of the pipeline's public `on_step` hook) or at a random moment of the real CLI. The
outages are real too: the S3 endpoint the pipeline uses stops answering (the proxy is cut),
the PostgreSQL server that holds totesys and the warehouse is restarted, or the stage's
connection is terminated by the server, each while the stage is in the middle of its work.
Concurrency is real as well: a second process of the same stage started at a random
moment (`concurrent_stage`), or the stage SIGSTOPped at a step while another process of
the stage takes over its lease and finishes, then SIGCONTed (`paused_stage`). Both
processes must end well (done, or exit 75: lease held or lost); anything else is a finding.
Nothing of the pipeline is patched; the next cycle runs as scheduled, with no repair.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.postgres import EmbeddedPostgres
from devstack.stack import TOTESYS_DATABASE, WAREHOUSE_DATABASE, StackEndpoints
from etl.tables import ALL_TABLES
from soak import plan
from soak.proxy import TcpProxy
from soak.stages import (
    GO,
    KILL,
    PAUSE,
    STAGES,
    StageOutcome,
    run_cli,
    run_concurrently,
    run_killed_at_random,
    run_paused,
)

# etl.database connects with this application_name, which is how the server finds it
PIPELINE_APPLICATION = "totesys-etl"
TRANSFORM_STEPS = ("data_written", "state_snapshot_written", "manifest_written", "state_written")


@dataclass(frozen=True)
class FaultRecord:
    cycle: int
    kind: str
    stage: str
    at: str  # the step, "start", or "random" for a kill at a random moment
    injected: bool  # False when the stage ended before the fault's moment came
    outcome: str  # what the stage did: ok, killed, or its one-line error
    # the other process of the stage (concurrent_stage, paused_stage): how it ended
    companion: StageOutcome | None = None

    @property
    def companion_failed(self) -> bool:
        """The other process ended neither done nor with the lease's exit code."""
        return self.companion is not None and not self.companion.ok_or_lease

    def describe(self) -> str:
        if self.companion is not None and self.kind in plan.DAMAGE_KINDS:
            what = self.at if self.injected else "not injected"
            return f"{self.kind} {what} -> {self.companion.stage}: {self.companion.describe()}"
        if self.companion is not None:
            other = "paused one" if self.kind == plan.PAUSED_STAGE else "second"
            where = f"{self.stage}@{self.at}" if self.injected else f"{self.stage} (not reached)"
            return f"{self.kind} {where} -> {self.outcome}; {other} -> {self.companion.describe()}"
        where = f"{self.stage}@{self.at}" if self.injected else f"{self.stage} (not reached)"
        return f"{self.kind} {where} -> {self.outcome}"


@dataclass(frozen=True)
class Moment:
    """Which steps of a stage a fault may hit: the `index`-th candidate, or `final` (the
    last candidate every run reaches) if fewer candidates come before it."""

    is_candidate: Callable[[str], bool]
    final: str
    expected: int  # about how many candidates a run meets; the index is drawn below it


class Pick:
    """Chooses the moment of one fault as the steps of a stage come by."""

    def __init__(self, when: Moment, rng: random.Random) -> None:
        self.when = when
        self.index = rng.randrange(when.expected)
        self.seen = 0
        self.at = ""

    def hits(self, step: str) -> bool:
        if self.at or not self.when.is_candidate(step):
            return False
        hit = self.seen == self.index or step == self.when.final
        self.seen += 1
        if hit:
            self.at = step
        return hit


def _table_step(step: str) -> bool:
    return step.startswith("table:")


def moment(kind: str, stage: str) -> Moment:
    if kind == plan.INGEST_KILLED_BEFORE_MANIFEST:
        return Moment(
            lambda s: _table_step(s) or s == "data_written", "data_written", len(ALL_TABLES) + 1
        )
    if kind == plan.INGEST_KILLED_AFTER_MANIFEST:
        return Moment(lambda s: s == "manifest_written", "manifest_written", 1)
    if kind == plan.PAUSED_STAGE and stage == "ingest":  # mid-extract, before its commits
        return Moment(
            lambda s: _table_step(s) or s in ("data_written", "manifest_written"),
            "manifest_written",
            len(ALL_TABLES) + 2,
        )
    if stage == "transform":
        return Moment(lambda s: s in TRANSFORM_STEPS, "state_written", len(TRANSFORM_STEPS))
    if stage == "load":  # every step of load is inside its batch's transaction
        return Moment(lambda s: _table_step(s) or s == "ledger_written", "ledger_written", 6)
    if kind == plan.S3_DOWN:  # ingest: after some files, before or after the manifest
        return Moment(
            lambda s: _table_step(s) or s in ("data_written", "manifest_written"),
            "manifest_written",
            len(ALL_TABLES) + 2,
        )
    # the database faults during ingest: while its snapshot transaction is open
    return Moment(_table_step, f"table:{ALL_TABLES[-1]}", len(ALL_TABLES))


def stage_for(kind: str, rng: random.Random) -> str:
    """The stage a fault of `kind` hits."""
    fixed = {
        plan.INGEST_KILLED_BEFORE_MANIFEST: "ingest",
        plan.INGEST_KILLED_AFTER_MANIFEST: "ingest",
        plan.TRANSFORM_KILLED: "transform",
        plan.LOAD_KILLED_MID_TRANSACTION: "load",
    }
    if kind in fixed:
        return fixed[kind]
    if kind in (plan.DATABASE_RESTARTED, plan.CONNECTION_TERMINATED):
        return rng.choice(("ingest", "load"))  # transform does not use the database
    return rng.choice(STAGES)


class Injector:
    """Runs one stage with one fault against the soak's stack."""

    def __init__(self, endpoints: StackEndpoints, proxy: TcpProxy, rng: random.Random) -> None:
        self.endpoints = endpoints
        self.proxy = proxy
        self.rng = rng
        self.postgres = EmbeddedPostgres(Path(endpoints.state_dir) / "postgres", endpoints.pg_port)

    def run(
        self, cycle: int, kind: str, stage: str, env: dict[str, str]
    ) -> tuple[StageOutcome, FaultRecord]:
        if kind == plan.STAGE_KILLED_AT_RANDOM_MOMENT:
            outcome, landed = run_killed_at_random(stage, env, self.rng)
            return outcome, FaultRecord(cycle, kind, stage, "random", landed, outcome.describe())
        if kind == plan.CONCURRENT_STAGE:
            first, second = run_concurrently(stage, env, self.rng)
            # the cycle goes on with whichever finished the stage's work
            outcome = first if first.ok or not second.ok else second
            companion = second if outcome is first else first
            return outcome, FaultRecord(
                cycle, kind, stage, "random", True, outcome.describe(), companion
            )
        if kind == plan.PAUSED_STAGE:
            return self._paused(cycle, stage, env)
        if kind == plan.S3_DOWN and self.rng.random() < 0.15:
            self.proxy.cut()  # down from the start: the stage cannot even list its work
            try:
                outcome = run_cli(stage, env)
            finally:
                self.proxy.restore()
            return outcome, FaultRecord(cycle, kind, stage, "start", True, outcome.describe())

        pick = Pick(moment(kind, stage), self.rng)
        try:
            outcome = run_paused(
                stage, env, lambda step: self._inject(kind) if pick.hits(step) else GO
            )
        finally:
            self.proxy.restore()
        return outcome, FaultRecord(
            cycle, kind, stage, pick.at or "-", bool(pick.at), outcome.describe()
        )

    def _paused(
        self, cycle: int, stage: str, env: dict[str, str]
    ) -> tuple[StageOutcome, FaultRecord]:
        """SIGSTOP the stage at a step; while it is stopped another process of the stage
        runs to the end (it waits until the server has ended the stopped holder's silent
        session); SIGCONT. The successor's outcome is the stage's for the cycle."""
        pick = Pick(moment(plan.PAUSED_STAGE, stage), self.rng)
        successor: list[StageOutcome] = []
        paused = run_paused(
            stage,
            env,
            lambda step: PAUSE if pick.hits(step) else GO,
            lambda: successor.append(run_cli(stage, env)),
        )
        if not successor:  # the moment never came: the stage simply ran
            return paused, FaultRecord(
                cycle, plan.PAUSED_STAGE, stage, "-", False, paused.describe()
            )
        return successor[0], FaultRecord(
            cycle, plan.PAUSED_STAGE, stage, pick.at, True, successor[0].describe(), paused
        )

    def _inject(self, kind: str) -> str:
        """Do the fault while the stage waits; KILL asks for the stage to be SIGKILLed."""
        if kind == plan.S3_DOWN:
            self.proxy.cut()
        elif kind == plan.DATABASE_RESTARTED:
            self.restart_database()
        elif kind == plan.CONNECTION_TERMINATED:
            self.terminate_pipeline_connections()
        else:
            return KILL
        return GO

    def restart_database(self) -> None:
        """Fast shutdown (every session is disconnected, open transactions roll back), start."""
        self.postgres.stop()
        self.postgres.start(self.endpoints.pg_password, (TOTESYS_DATABASE, WAREHOUSE_DATABASE))

    def terminate_pipeline_connections(self) -> int:
        """What a network blip or a DBA does to the pipeline's session: the server ends it."""
        with self.postgres.admin_connection() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (PIPELINE_APPLICATION,),
            ).fetchone()
        return int(str(row[0])) if row else 0
