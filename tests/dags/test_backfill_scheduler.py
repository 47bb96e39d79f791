"""A backfill under the real scheduler (`airflow standalone`, harness of test_real_scheduler):
a change committed two hours behind the watermark is missed by the scheduled runs and is in
the warehouse exactly once after `POST /api/v2/backfills` of the minutes holding it, with
three backfill runs at a time; repeating the backfill changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.airflow import Standalone
from devstack.processes import wait_until
from devstack.stack import StackEndpoints
from etl.config import Settings
from tests.dags.test_backfill_runs import copies, set_sales_order
from tests.dags.test_real_scheduler import (  # noqa: F401  (fixtures, used by name)
    airflow,
    create_backfill,
    runs,
    settings,
)
from tests.etl.load import warehouse_rows

pytestmark = pytest.mark.slow

FACTS = ("fact_sales_order", "fact_purchase_orders", "fact_payment")


def source_now(url: str) -> datetime:
    """Now on the source's clock (naive UTC, how totesys writes last_updated)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::timestamp(3)").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def scheduled_runs_after(running: Standalone, after: datetime, count: int) -> bool:
    """At least `count` scheduled runs due after `after` have succeeded."""
    done = [
        r
        for r in runs(running, run_type="scheduled")
        if r["state"] == "success" and datetime.fromisoformat(r["run_after"]) > after
    ]
    return len(done) >= count


def backfill(running: Standalone, start: datetime, end: datetime, reprocess: str) -> dict[str, Any]:
    return create_backfill(running, start, end, max_active_runs=3, reprocess_behavior=reprocess)


def backfill_finished(
    running: Standalone, count: int, finished_after: datetime
) -> list[Any] | None:
    found = [
        r
        for r in runs(running, run_type="backfill")
        if r["end_date"] and datetime.fromisoformat(r["end_date"]) > finished_after
    ]
    return found if len(found) == count else None


def test_a_backfill_brings_a_late_change_in_exactly_once(
    airflow: Standalone,  # noqa: F811
    airflow_stack: StackEndpoints,
    settings: Settings,  # noqa: F811
) -> None:
    url = airflow_stack.totesys_db_url
    wait_until(lambda: warehouse_rows.rows(settings, "fact_payment"), 300, "the first load")
    now = source_now(url)
    on_time = set_sales_order(url, now)  # the watermark moves to now
    wait_until(lambda: copies(settings, on_time, now), 300, "the on-time change")
    late_at = now - timedelta(hours=2)
    late = set_sales_order(url, late_at, exclude=(on_time,))
    committed = datetime.now(UTC)
    wait_until(lambda: scheduled_runs_after(airflow, committed, 2), 600, "two scheduled runs")
    assert copies(settings, late, late_at) == 0, "the scheduled runs never read that far back"

    # the three one-minute intervals after the change's minute: each re-reads its minute
    # plus the 15-minute overlap before it, so all three hold the change
    first = late_at.replace(second=0, microsecond=0, tzinfo=UTC) + timedelta(minutes=1)
    started = datetime.now(UTC)
    created = backfill(airflow, first, first + timedelta(minutes=2), "none")
    assert created["max_active_runs"] == 3
    done = wait_until(lambda: backfill_finished(airflow, 3, started), 900, "three backfill runs")
    assert [r["state"] for r in done] == ["success"] * 3, done
    assert copies(settings, late, late_at) == 1
    for table in FACTS:
        rows = warehouse_rows.rows(settings, table)
        assert len(rows) == len(set(rows)), f"{table} holds a version twice"

    # one backfill per DAG at a time: the scheduler marks it completed after its runs
    wait_until(lambda: airflow.api("GET", f"/backfills/{created['id']}")["completed_at"], 300,
               "the backfill to be completed")  # fmt: skip
    digest = warehouse_rows.digest(settings)
    again = datetime.now(UTC)
    backfill(airflow, first, first + timedelta(minutes=2), "completed")
    rerun = wait_until(lambda: backfill_finished(airflow, 3, again), 900, "the repeated backfill")
    assert [r["state"] for r in rerun] == ["success"] * 3, rerun
    assert copies(settings, late, late_at) == 1
    # scheduled runs go on meanwhile, but the source is quiet: nothing else may change
    assert warehouse_rows.digest(settings) == digest
