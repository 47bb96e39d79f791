"""The DAG under a real Airflow: scheduler, dag-processor, triggerer and api-server
(`airflow standalone`, LocalExecutor), driven through the REST API and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from deploy.local.airflow import airflow_cli, airflow_env, migrate
from deploy.local.processes import free_port
from deploy.local.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from simulator.seed import SeedPlan, seed_totesys
from tests.etl.load import warehouse_rows

pytestmark = pytest.mark.slow


@dataclass
class Airflow:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        token = requests.get(f"{self.url}/auth/token", timeout=10).json()["access_token"]
        response = requests.request(
            method,
            f"{self.url}/api/v2{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def runs(self, **query: Any) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.api(
            "GET", "/dags/totesys_etl/dagRuns", params={"limit": 100, **query}
        )["dag_runs"]
        return runs


def wait_until(condition: Any, timeout: float, what: str, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def settings(airflow_stack: StackEndpoints) -> Settings:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.02), replace=True)
    settings = Settings.from_env(airflow_stack.as_env())
    init_warehouse(settings)
    return settings


@pytest.fixture(scope="module")
def airflow(
    airflow_stack: StackEndpoints, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Airflow]:
    port = free_port()
    home = tmp_path_factory.mktemp("standalone")
    env = airflow_env(airflow_stack, home, {
        "AIRFLOW__API__PORT": str(port),
        # task runners reach the api-server's execution API here, not on the default :8080
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__TOTESYS__INGEST_SCHEDULE": "* * * * *",
        "AIRFLOW__TOTESYS__LOAD_EVERY_MINUTES": "1",
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "10",
        # paused until every component is up: a run scheduled earlier fails on a half-started Airflow
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    })  # fmt: skip
    migrate(env)
    airflow = str(Path(sys.executable).with_name("airflow"))
    with (home / "standalone.log").open("wb") as log:
        process = subprocess.Popen([airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    running = Airflow(f"http://127.0.0.1:{port}", env, process)
    try:
        wait_until(lambda: _answers(running.url), 240, "the api-server")
        wait_until(lambda: _dag_listed(running), 120, "the DAG to be parsed")
        time.sleep(10)  # scheduler and triggerer finish starting after the api-server
        running.api("PATCH", "/dags/totesys_etl", json={"is_paused": False})
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v2/version", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _dag_listed(airflow: Airflow) -> bool:
    return any(d["dag_id"] == "totesys_etl" for d in airflow.api("GET", "/dags")["dags"])


def finished(airflow: Airflow, run_id: str) -> str | None:
    state = next(r["state"] for r in airflow.runs() if r["dag_run_id"] == run_id)
    return state if state in ("success", "failed") else None


def test_trigger_through_the_rest_api_succeeds(airflow: Airflow) -> None:
    run = airflow.api(
        "POST",
        "/dags/totesys_etl/dagRuns",
        json={"logical_date": None, "conf": {"force_load": True}},
    )

    state = wait_until(lambda: finished(airflow, run["dag_run_id"]), 300, "the triggered run")

    assert state == "success"


def test_a_source_change_reaches_the_warehouse_well_within_30_minutes(
    airflow: Airflow, airflow_stack: StackEndpoints, settings: Settings
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
    airflow: Airflow, settings: Settings
) -> None:
    wait_until(lambda: warehouse_rows.rows(settings, "fact_payment"), 300, "a loaded warehouse")
    facts = {
        t: warehouse_rows.rows(settings, t)
        for t in ("fact_sales_order", "fact_purchase_orders", "fact_payment")
    }
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(minutes=2)

    created = airflow_cli(airflow.env, "backfill", "create", "--dag-id", "totesys_etl",
                          "--from-date", start.isoformat(), "--to-date", end.isoformat(),
                          "--reprocess-behavior", "completed")  # fmt: skip
    assert created.returncode == 0, created.stderr[-2000:]

    def backfill_done() -> list[dict[str, Any]] | None:
        runs = [r for r in airflow.runs(run_type="backfill")]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(runs) == 3 and len(done) == 3 else None

    runs = wait_until(backfill_done, 600, "three backfill runs")
    assert [r["state"] for r in runs] == ["success"] * 3
    for table, before in facts.items():
        after = warehouse_rows.rows(settings, table)
        assert len(after) == len(set(after)), f"{table} has a duplicate version"
        assert set(before) <= set(after)
