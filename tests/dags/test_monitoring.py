"""Monitoring under Airflow: the listener plugin records every finished task, and the daily
reconcile DAG emails when the warehouse no longer agrees with the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.airflow import airflow_env, dags_test
from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.ops.metrics import read_local
from simulator.seed import SeedPlan, seed_totesys
from tests.dags.tasks import ETL_TASKS

FORCE_LOAD = {"force_load": True}
TASKS = set(ETL_TASKS)


@pytest.fixture(scope="module")
def seeded(airflow_stack: StackEndpoints) -> Settings:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.03), replace=True)
    settings = Settings.from_env(airflow_stack.as_env())
    init_warehouse(settings)
    return settings


def with_local_metrics(stack: StackEndpoints, home: Path, path: Path) -> dict[str, str]:
    return airflow_env(stack, home, {
        "AIRFLOW__TOTESYS__METRICS_SINK": "local",
        "AIRFLOW__TOTESYS__METRICS_FILE": str(path),
        "AIRFLOW__TOTESYS__RETRIES": "0",
    })  # fmt: skip


def outcomes(path: Path) -> dict[str, str]:
    return {r["stage"]: r["outcome"] for r in read_local(path) if r["name"] == "TaskOutcome"}


def test_every_task_of_a_run_is_recorded_with_its_outcome(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "metrics.jsonl"
    env = with_local_metrics(airflow_stack, airflow_home, path)

    run = dags_test(env, "2026-11-28T10:15:00+00:00", FORCE_LOAD)

    assert run.succeeded, run.output[-3000:]
    assert outcomes(path) == dict.fromkeys(TASKS, "success")
    records = read_local(path)
    stages = {r["stage"] for r in records if r["name"] == "StageSeconds"}
    assert stages == {"ingest", "transform", "load"}  # the tasks record their stages too
    assert any(r["name"] == "WarehouseLagSeconds" for r in records)


def test_a_failed_task_is_recorded_as_failed(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "metrics.jsonl"
    env = {**with_local_metrics(airflow_stack, airflow_home, path),
           "AIRFLOW__TOTESYS__INGESTION_BUCKET": "no-such-bucket"}  # fmt: skip

    run = dags_test(env, "2026-11-28T10:20:00+00:00")

    assert not run.succeeded
    assert outcomes(path) == {"ingest": "failed"}
    (seconds,) = [r for r in read_local(path) if r["name"] == "TaskSeconds"]
    assert seconds["stage"] == "ingest" and seconds["value"] >= 0


def warehouse(settings: Settings) -> psycopg.Connection[Any]:
    return psycopg.connect(settings.warehouse_db_url.reveal(), autocommit=True)  # type: ignore[union-attr]


def test_the_reconcile_dag_passes_then_emails_on_a_difference(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "metrics.jsonl"
    env = with_local_metrics(airflow_stack, airflow_home, path)
    loaded = dags_test(env, "2026-11-28T10:30:00+00:00", FORCE_LOAD)
    assert loaded.succeeded, loaded.output[-3000:]
    mails = len(airflow_stack.messages())

    healthy = dags_test(env, "2026-11-28T03:30:00+00:00", dag_id="totesys_reconcile")
    assert healthy.succeeded, healthy.output[-3000:]
    assert len(airflow_stack.messages()) == mails

    with warehouse(seeded) as conn:
        conn.execute("UPDATE dim_currency SET currency_name = 'Doubloon' WHERE currency_id = 1")
    broken = dags_test(env, "2026-11-29T03:30:00+00:00", dag_id="totesys_reconcile")

    assert not broken.succeeded
    (email,) = airflow_stack.messages()[mails:]
    assert "totesys_reconcile.reconcile failed" in str(email["Subject"])
    assert "dim_currency: DIFFERS" in str(email.get_body().get_content())  # type: ignore[union-attr]
    differences = [r["value"] for r in read_local(path) if r["name"] == "ReconcileDifferences"]
    assert differences == [0, 1]
