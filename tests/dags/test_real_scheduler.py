"""The DAG under a real Airflow: scheduler, dag-processor, triggerer and api-server
(`airflow standalone`, LocalExecutor), driven through the REST API and the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.airflow import Standalone, airflow_env, migrate, standalone_settings
from devstack.processes import free_port, wait_until
from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from simulator.seed import SeedPlan, seed_totesys
from tests.dags.tasks import ETL_TASKS
from tests.etl.load import warehouse_rows

pytestmark = pytest.mark.slow


def runs(airflow: Standalone, **query: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = airflow.api(
        "GET", "/dags/totesys_etl/dagRuns", params={"limit": 100, **query}
    )["dag_runs"]
    return found


def create_backfill(
    airflow: Standalone,
    start: datetime,
    end: datetime,
    max_active_runs: int = 10,
    reprocess_behavior: str = "completed",
) -> dict[str, Any]:
    """`POST /api/v2/backfills` (by default re-running what completed), once: the UI's way
    of starting a backfill, with the metadata in PostgreSQL as on MWAA."""
    body = {"dag_id": "totesys_etl", "from_date": start.isoformat(), "to_date": end.isoformat(),
            "reprocess_behavior": reprocess_behavior, "max_active_runs": max_active_runs}  # fmt: skip
    created: dict[str, Any] = airflow.api("POST", "/backfills", json=body)
    return created


@pytest.fixture(scope="module")
def settings(airflow_stack: StackEndpoints) -> Settings:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.02), replace=True)
    settings = Settings.from_env(airflow_stack.as_env())
    init_warehouse(settings)
    return settings


@pytest.fixture(scope="module")
def airflow(
    airflow_stack: StackEndpoints, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Standalone]:
    """Started as `make airflow` starts it (Standalone.start), on a one-minute schedule."""
    home = tmp_path_factory.mktemp("standalone")
    env = airflow_env(airflow_stack, home, {
        **standalone_settings(free_port()),
        "AIRFLOW__TOTESYS__INGEST_SCHEDULE": "* * * * *",
        "AIRFLOW__TOTESYS__LOAD_EVERY_MINUTES": "1",
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "10",
    })  # fmt: skip
    migrate(env)
    running = Standalone.start(env, home / "standalone.log")
    try:
        yield running
    finally:
        running.stop()


def finished(airflow: Standalone, run_id: str) -> str | None:
    state = next(r["state"] for r in runs(airflow) if r["dag_run_id"] == run_id)
    return state if state in ("success", "failed") else None


def test_the_first_scheduled_run_is_green_on_its_first_try(airflow: Standalone) -> None:
    first = wait_until(lambda: runs(airflow, run_type="scheduled"), 120, "the first run")[0]
    state = wait_until(lambda: finished(airflow, first["dag_run_id"]), 300, "the first run")
    tis = airflow.api("GET", f"/dags/totesys_etl/dagRuns/{first['dag_run_id']}/taskInstances")[
        "task_instances"
    ]

    assert state == "success"
    assert {ti["task_id"]: ti["try_number"] for ti in tis} == {t: 1 for t in ETL_TASKS}
    # nothing in a healthy run's logs is masked: no connection secret is an ordinary word
    home = Path(airflow.env["AIRFLOW_HOME"])
    logs = [
        home / "standalone.log",
        *home.glob(f"logs/dag_id=totesys_etl/run_id={first['dag_run_id']}/*/*.log"),
    ]
    masked = [line for log in logs for line in log.read_text().splitlines() if "***" in line]
    assert len(logs) > 6 and masked == []


def test_trigger_through_the_rest_api_succeeds(airflow: Standalone) -> None:
    run = airflow.api(
        "POST",
        "/dags/totesys_etl/dagRuns",
        json={"logical_date": None, "conf": {"force_load": True}},
    )

    state = wait_until(lambda: finished(airflow, run["dag_run_id"]), 300, "the triggered run")

    assert state == "success"


def test_a_source_change_reaches_the_warehouse_well_within_30_minutes(
    airflow: Standalone, airflow_stack: StackEndpoints, settings: Settings
) -> None:
    wait_until(lambda: warehouse_rows.rows(settings, "dim_currency"), 300, "the first load")
    with psycopg.connect(airflow_stack.totesys_db_url) as conn:
        conn.execute(
            "UPDATE design SET file_location = '/srv/latency-probe', last_updated = now() WHERE design_id = 1"
        )
    changed = time.monotonic()

    def arrived() -> bool:
        return any(
            r[2] == "/srv/latency-probe"
            for r in warehouse_rows.rows(settings, "dim_design")
            if r[0] == 1
        )

    wait_until(arrived, 25 * 60, "the change in the warehouse", every=1)
    latency = time.monotonic() - changed
    print(
        f"\nsource change -> warehouse under the real scheduler (1-minute schedule): {latency:.0f}s"
    )
    assert latency < 30 * 60


def test_backfill_of_three_past_intervals_succeeds_without_duplicating_facts(
    airflow: Standalone, settings: Settings
) -> None:
    wait_until(lambda: warehouse_rows.rows(settings, "fact_payment"), 300, "a loaded warehouse")
    facts = {
        t: warehouse_rows.rows(settings, t)
        for t in ("fact_sales_order", "fact_purchase_orders", "fact_payment")
    }
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(minutes=2)

    create_backfill(airflow, start, end)

    def backfill_done() -> list[dict[str, Any]] | None:
        found = runs(airflow, run_type="backfill")
        done = [r for r in found if r["state"] in ("success", "failed")]
        return found if len(found) == 3 and len(done) == 3 else None

    backfilled = wait_until(backfill_done, 600, "three backfill runs")
    assert [r["state"] for r in backfilled] == ["success"] * 3
    for table, before in facts.items():
        after = warehouse_rows.rows(settings, table)
        assert len(after) == len(set(after)), f"{table} has a duplicate version"
        assert set(before) <= set(after)
