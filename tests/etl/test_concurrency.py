"""Several processes of the pipeline at once, against the real services (issue #13): three
`python -m etl run` together, three of each stage alone, and a stage SIGSTOPped while
another process takes over its lease. Every process ends done or with the lease's exit
code, the next plain run succeeds, and the warehouse equals the SQL expectation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.errors import EXIT_LEASE
from etl.ingest.run import ingest
from etl.load.loader import init_warehouse
from etl.storage import ObjectStore
from simulator.expectations import Row, calendar, current_dimensions, current_fact_versions
from simulator.simulate import SimulationPlan, simulate
from soak.stages import GO, PAUSE, StageOutcome, run_cli, run_paused
from tests.conftest import REPO_ROOT
from tests.etl.load import warehouse_rows
from tests.etl.test_main import env_for, run_etl

ROUNDS = 5


def together(env: dict[str, str], *commands: str) -> list[subprocess.CompletedProcess[str]]:
    """`python -m etl <command>` for each command, all started at once."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "etl", command],
            cwd=REPO_ROOT,
            env={"PATH": "/usr/bin:/bin", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    done = []
    for process, command in zip(processes, commands, strict=True):
        out, err = process.communicate(timeout=600)
        done.append(subprocess.CompletedProcess([command], process.returncode, out, err))
    return done


def source(settings: Settings) -> str:
    return settings.totesys_db_url.reveal()  # type: ignore[union-attr]


def assert_warehouse_equals_the_sql_expectation(
    settings: Settings, facts: dict[str, set[Row]]
) -> None:
    url = source(settings)
    for table, expected in current_dimensions(url).items():
        assert set(warehouse_rows.rows(settings, table)) == expected, table
    for table, expected in facts.items():
        loaded = warehouse_rows.rows(settings, table)
        assert len(loaded) == len(set(loaded)), f"{table} has duplicates"
        assert set(loaded) == expected, table
    assert set(warehouse_rows.rows(settings, "dim_date")) == calendar(url, facts)


def rounds_of(
    stack: StackEndpoints, settings: Settings, run_round: Callable[[dict[str, str]], None]
) -> None:
    """ROUNDS rounds of source changes, each followed by `run_round` and a plain `run`;
    the versions the source holds after each round's changes are what the warehouse must
    hold in the end (nothing changes the source while a round's processes run)."""
    init_warehouse(settings)
    env = env_for(stack, settings)
    facts: dict[str, set[Row]] = {}
    for number in range(ROUNDS):
        if number:
            simulate(
                source(settings), SimulationPlan(days=1, edits_per_weekday=3, seed=40 + number)
            )
        for table, versions in current_fact_versions(source(settings)).items():
            facts.setdefault(table, set()).update(versions)
        run_round(env)
        plain = run_etl(env, "run")
        assert plain.returncode == 0, plain.stderr
    assert_warehouse_equals_the_sql_expectation(settings, facts)


def assert_done_or_lease(results: list[subprocess.CompletedProcess[str]]) -> None:
    for result in results:
        assert result.returncode in (0, EXIT_LEASE), result.stderr
        if result.returncode == EXIT_LEASE:
            assert result.stderr.startswith("error: the "), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_three_runs_at_once_over_five_rounds_of_changes(
    stack: StackEndpoints, settings: Settings
) -> None:
    rounds_of(stack, settings, lambda env: assert_done_or_lease(together(env, *["run"] * 3)))


def test_three_of_each_stage_at_once_over_five_rounds_of_changes(
    stack: StackEndpoints, settings: Settings
) -> None:
    def each_stage(env: dict[str, str]) -> None:
        for stage in ("ingest", "transform", "load"):
            assert_done_or_lease(together(env, *[stage] * 3))

    rounds_of(stack, settings, each_stage)


def snapshot(s3: Any, settings: Settings) -> dict[str, str]:
    """Every object of both buckets with its ETag: what "changed nothing" is checked on."""
    objects = {}
    for bucket in (settings.ingestion_bucket, settings.processed_bucket):
        store = ObjectStore(s3, bucket)
        for key in store.keys(""):
            objects[f"{bucket}/{key}"] = str(s3.head_object(Bucket=bucket, Key=key)["ETag"])
    return objects


def paused_and_taken_over(
    env: dict[str, str], stage: str, at: str, s3: Any, settings: Settings
) -> tuple[StageOutcome, StageOutcome, dict[str, str]]:
    """Run `stage` SIGSTOPped at step `at`; meanwhile another `python -m etl <stage>` runs
    to its end; then the bucket is recorded and the paused one resumed. Returns (paused
    outcome, successor outcome, the buckets as the successor left them)."""
    after: list[tuple[StageOutcome, dict[str, str]]] = []

    def take_over() -> None:
        successor = run_cli(stage, env)
        after.append((successor, snapshot(s3, settings)))

    paused = run_paused(stage, env, lambda step: PAUSE if step == at else GO, take_over)
    assert after, f"{stage} never reached {at}"
    return paused, after[0][0], after[0][1]


@pytest.mark.parametrize("at", ["table:sales_order", "data_written", "manifest_written"])
def test_a_paused_ingest_resumed_after_a_takeover_changes_nothing(
    stack: StackEndpoints, settings: Settings, s3: Any, at: str
) -> None:
    init_warehouse(settings)
    ingest(settings, s3)
    facts = current_fact_versions(source(settings))
    simulate(source(settings), SimulationPlan(days=1, edits_per_weekday=3, seed=21))
    env = {**env_for(stack, settings), "LEASE_TIMEOUT_SECONDS": "2"}

    paused, successor, left = paused_and_taken_over(env, "ingest", at, s3, settings)

    assert successor.ok, successor.error
    assert paused.returncode == EXIT_LEASE, paused.error
    assert paused.error.startswith("error: the ingest lease (generation "), paused.error
    assert snapshot(s3, settings) == left, "the resumed ingest wrote or deleted nothing"
    for table, versions in current_fact_versions(source(settings)).items():
        facts[table] |= versions
    plain = run_etl(env, "run")
    assert plain.returncode == 0, plain.stderr
    assert_warehouse_equals_the_sql_expectation(settings, facts)


@pytest.mark.parametrize(
    "at", ["data_written", "state_snapshot_written", "manifest_written", "state_written"]
)
def test_a_paused_transform_resumed_after_a_takeover_changes_nothing(
    stack: StackEndpoints, settings: Settings, s3: Any, at: str
) -> None:
    init_warehouse(settings)
    env = {**env_for(stack, settings), "LEASE_TIMEOUT_SECONDS": "2"}
    assert run_etl(env, "run").returncode == 0
    facts = current_fact_versions(source(settings))
    simulate(source(settings), SimulationPlan(days=1, edits_per_weekday=3, seed=22))
    assert run_etl(env, "ingest").returncode == 0

    paused, successor, left = paused_and_taken_over(env, "transform", at, s3, settings)

    assert successor.ok, successor.error
    # paused after its last write, it may find nothing left to do and end well
    assert paused.returncode in (0, EXIT_LEASE), paused.error
    assert snapshot(s3, settings) == left, "the resumed transform wrote or deleted nothing"
    plain = run_etl(env, "run")
    assert plain.returncode == 0, plain.stderr
    for table, versions in current_fact_versions(source(settings)).items():
        facts[table] |= versions
    assert_warehouse_equals_the_sql_expectation(settings, facts)


@pytest.mark.parametrize("at", ["table:dim_staff", "ledger_written"])
def test_a_paused_load_resumed_after_a_takeover_loads_each_batch_once(
    stack: StackEndpoints, settings: Settings, s3: Any, at: str
) -> None:
    init_warehouse(settings)
    env = {**env_for(stack, settings), "LEASE_TIMEOUT_SECONDS": "2"}
    assert run_etl(env, "ingest").returncode == 0
    assert run_etl(env, "transform").returncode == 0
    facts = current_fact_versions(source(settings))

    paused, successor, _ = paused_and_taken_over(env, "load", at, s3, settings)

    assert successor.ok, successor.error
    assert paused.returncode == EXIT_LEASE, paused.error  # its transaction ended by the server
    assert paused.error.startswith("error: the load lease (generation "), paused.error
    assert len(warehouse_rows.ledger(settings)) == 1, "the batch was loaded once"
    assert_warehouse_equals_the_sql_expectation(settings, facts)
