"""Runs of the DAG at the same time, and what Airflow does with each kind of error
(issue #13): a scheduled run, a manual full refresh and a backfill together under the
real scheduler all succeed without duplicating anything (the stage leases serialise them;
a run that could not get a lease retries); a bad input fails on its first try with one
email although the DAG retries, while an outage is still retried (test_dag_run)."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.airflow import Standalone, airflow_env, dags_test
from devstack.processes import wait_until
from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from simulator.expectations import current_dimensions, current_fact_versions
from simulator.seed import SeedPlan, seed_totesys
from tests.dags.test_real_scheduler import (  # noqa: F401 (fixtures)
    airflow,
    create_backfill,
    finished,
    runs,
    settings,
)
from tests.etl.load import warehouse_rows


@pytest.fixture(scope="module")
def seeded(airflow_stack: StackEndpoints) -> Settings:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.02), replace=True)
    ready = Settings.from_env(airflow_stack.as_env())
    init_warehouse(ready)
    return ready


def test_a_bad_input_fails_on_its_first_try_with_one_email_despite_retries(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings
) -> None:
    env = airflow_env(airflow_stack, airflow_home, {
        "AIRFLOW__TOTESYS__RETRIES": "2",
        "AIRFLOW__TOTESYS__RETRY_DELAY_SECONDS": "1",
    })  # fmt: skip
    mails = len(airflow_stack.messages())

    result = dags_test(
        env, "2026-11-28T16:00:00+00:00", {"tables": ["currency", "payment; DROP TABLE staff"]}
    )

    assert "state=failed" in result.output
    sent = airflow_stack.messages()[mails:]
    assert len(sent) == 1, [m["Subject"] for m in sent]
    assert sent[0]["Subject"].startswith("[totesys] totesys_etl.ingest failed (run manual__")
    assert sent[0]["Subject"].endswith(", try 1)"), "no retry before the email"
    part: Any = sent[0].get_body()
    body = html.unescape(str(part.get_content()))
    assert "<td>Try</td><td>1" in body
    assert "ConfigError: unknown table(s) 'payment; DROP TABLE staff'" in body


@pytest.mark.slow
def test_scheduled_manual_full_refresh_and_backfill_runs_at_once(
    airflow: Standalone,  # noqa: F811
    settings: Settings,  # noqa: F811
    airflow_stack: StackEndpoints,
) -> None:
    wait_until(lambda: warehouse_rows.rows(settings, "fact_payment"), 300, "a first load")
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)

    manual = airflow.api(
        "POST",
        "/dags/totesys_etl/dagRuns",
        json={"logical_date": None, "conf": {"full_refresh": True, "force_load": True}},
    )
    create_backfill(airflow, end - timedelta(minutes=1), end)

    def all_done() -> list[dict[str, Any]] | None:
        found = runs(airflow, run_type="backfill")
        done = [r for r in found if r["state"] in ("success", "failed")]
        if len(found) < 2 or len(done) < len(found):
            return None
        return found if finished(airflow, manual["dag_run_id"]) else None

    backfills = wait_until(all_done, 900, "the manual run and the backfill runs")
    scheduled = wait_until(
        lambda: [r for r in runs(airflow, run_type="scheduled") if r["state"] == "success"],
        300,
        "a scheduled run that succeeded",
    )

    assert finished(airflow, manual["dag_run_id"]) == "success"
    assert [r["state"] for r in backfills] == ["success"] * len(backfills)
    assert scheduled
    url = airflow_stack.totesys_db_url
    for table, expected in current_dimensions(url).items():
        assert set(warehouse_rows.rows(settings, table)) == expected, table
    for table, current in current_fact_versions(url).items():
        loaded = warehouse_rows.rows(settings, table)
        assert len(loaded) == len(set(loaded)), f"{table} has a duplicate version"
        assert current <= set(loaded), table
