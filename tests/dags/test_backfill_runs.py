"""Backfill, re-run and sweep runs of the DAG: how a run's mode is decided (pure), and the
nightly sweep run end to end with `airflow dags test` against the real local stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from totesys_airflow.config import DagConfig
from totesys_airflow.intervals import data_interval, is_sweep_end, load_wanted, plan_run

from devstack.airflow import airflow_env, dags_test
from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.ops.metrics import read_local
from simulator.seed import SeedPlan, seed_totesys
from tests.etl.load import warehouse_rows

FORCE_LOAD = {"force_load": True}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_zero_length_interval_is_derived_from_the_schedule() -> None:
    # CronTriggerTimetable's runs: start == end; the interval is back to the previous fire
    end = at("2026-03-01T10:05")
    assert data_interval("*/5 * * * *", end, end) == (at("2026-03-01T10:00"), end)
    assert data_interval("0 * * * *", end - timedelta(minutes=5), end - timedelta(minutes=5)) == (
        at("2026-03-01T09:00"),
        at("2026-03-01T10:00"),
    )
    # a manual run between fires: since the last fire
    assert data_interval("0 * * * *", None, at("2026-03-01T10:20")) == (
        at("2026-03-01T10:00"),
        at("2026-03-01T10:20"),
    )
    # a timetable with real intervals is used as it is
    assert data_interval("*/5 * * * *", at("2026-03-01T09:00"), end) == (
        at("2026-03-01T09:00"),
        end,
    )


def test_the_run_type_and_interval_decide_the_mode() -> None:
    config = DagConfig()
    two = at("2026-03-02T02:00")
    assert plan_run("backfill", two, two, config).mode == "backfill"  # backfill wins
    assert plan_run("scheduled", two, two, config).mode == "sweep"
    assert plan_run("scheduled", None, two + timedelta(minutes=5), config).mode == "incremental"
    assert plan_run("manual", None, two, DagConfig(sweep_at="03:30")).mode == "incremental"
    assert is_sweep_end(at("2026-03-02T03:30"), "03:30")
    incremental = plan_run("scheduled", None, at("2026-03-02T10:05"), config)
    assert not load_wanted(incremental, 0) and load_wanted(incremental, 1)
    assert load_wanted(plan_run("backfill", None, at("2026-03-02T10:05"), config), 0)


def test_sweep_settings_are_checked_at_parse_time() -> None:
    assert DagConfig.from_env({"AIRFLOW__TOTESYS__SWEEP_AT": "04:15"}).sweep_at == "04:15"
    assert DagConfig.from_env({"AIRFLOW__TOTESYS__SWEEP_HOURS": "30"}).sweep_hours == 30.0
    with pytest.raises(ValueError, match="SWEEP_AT must be HH:MM"):
        DagConfig(sweep_at="2:00")
    with pytest.raises(ValueError, match="SWEEP_HOURS must be positive"):
        DagConfig(sweep_hours=0)


def set_sales_order(url: str, last_updated: datetime, exclude: tuple[int, ...] = ()) -> int:
    """Update one sales order (not in `exclude`) dated `last_updated` on the source's clock."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT sales_order_id FROM sales_order WHERE NOT sales_order_id = ANY(%s)"
            " ORDER BY sales_order_id LIMIT 1",
            (list(exclude),),
        ).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = %s"
            " WHERE sales_order_id = %s",
            (last_updated, row[0]),
        )
    return int(row[0])


def copies(settings: Settings, order: int, version: datetime) -> int:
    return sum(
        1
        for r in warehouse_rows.rows(settings, "fact_sales_order")
        if r[0] == order and datetime.combine(r[3], r[4]) == version
    )


def test_the_nightly_sweep_brings_a_late_change_in_once_and_reports_it(
    airflow_stack: StackEndpoints, airflow_home: Path, tmp_path: Path
) -> None:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.02), replace=True)
    settings = Settings.from_env(airflow_stack.as_env())
    init_warehouse(settings)
    metrics_file = tmp_path / "metrics.jsonl"
    env = airflow_env(airflow_stack, airflow_home, {
        "AIRFLOW__TOTESYS__METRICS_SINK": "local",
        "AIRFLOW__TOTESYS__METRICS_FILE": str(metrics_file),
    })  # fmt: skip
    url = airflow_stack.totesys_db_url

    first = dags_test(env, "2026-11-28T10:15:00+00:00", FORCE_LOAD)
    assert first.succeeded, first.output[-3000:]
    on_time = set_sales_order(url, datetime(2026, 11, 29, 1, 30))  # moves the watermark
    normal = dags_test(env, "2026-11-29T01:45:00+00:00", FORCE_LOAD)
    assert normal.succeeded, normal.output[-3000:]
    late_at = datetime(2026, 11, 28, 23, 30)  # two hours behind the watermark
    late = set_sales_order(url, late_at, exclude=(on_time,))
    after = dags_test(env, "2026-11-29T01:50:00+00:00", FORCE_LOAD)
    assert after.succeeded, after.output[-3000:]
    assert copies(settings, on_time, datetime(2026, 11, 29, 1, 30)) == 1
    assert copies(settings, late, late_at) == 0, "normal runs never read that far back"

    sweep = dags_test(env, "2026-11-29T02:00:00+00:00")  # no force_load: the sweep loads
    assert sweep.succeeded, sweep.output[-3000:]
    assert copies(settings, late, late_at) == 1
    assert "'sweep_missed_versions': 1" in sweep.output
    recorded = [r for r in read_local(metrics_file) if r["name"] == "SweepMissedVersions"]
    assert [r["value"] for r in recorded] == [1.0]

    digest = warehouse_rows.digest(settings)
    again = dags_test(env, "2026-11-30T02:00:00+00:00")  # the next night: nothing missed
    assert again.succeeded, again.output[-3000:]
    assert "'sweep_missed_versions': 0" in again.output
    assert warehouse_rows.digest(settings) == digest
    fact_rows = warehouse_rows.rows(settings, "fact_sales_order")
    assert len(fact_rows) == len(set(fact_rows))
