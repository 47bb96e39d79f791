"""Window batches on the real stack: a change committed two hours behind the watermark is
missed by normal runs and reaches the warehouse exactly once through `ingest --since/--until`
or the nightly sweep; 24 hourly windows leave the warehouse equal to the SQL expectation;
repeating a window changes nothing and never moves a watermark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.errors import ConfigError
from etl.ingest import window as backfill
from etl.ingest.run import ingest, load_state
from etl.ingest.watermark import IngestState
from etl.ingest.window import Window, interval_window, sweep_window
from etl.load.loader import init_warehouse, load_pending
from etl.manifests import ingestion as ingestion_manifest
from etl.ops.cycle import run_cycle
from etl.ops.metrics import JsonLinesMetrics, read_local
from etl.ops.sweep import missed_versions, report_sweep
from etl.storage import ObjectStore
from etl.transform.batch import transform_pending
from simulator.expectations import Row
from simulator.simulate import SimulationPlan, simulate
from tests.etl.load import warehouse_rows
from tests.etl.load.test_loader import assert_warehouse_matches, run_and_expect, source
from tests.etl.test_main import env_for, run_etl

UTC_ZONE = ZoneInfo("UTC")


def state_of(settings: Settings, s3: Any) -> IngestState:
    return load_state(ObjectStore(s3, settings.ingestion_bucket))


def watermark(settings: Settings, s3: Any, table: str) -> datetime:
    value = state_of(settings, s3).bookmark(table).value
    assert value is not None
    return value


def commit_late_change(url: str, at: datetime) -> int:
    """An update of one sales order, committed now but dated `at` (a long transaction, a
    restored backup): one whose current version is older than `at`, so it is a new version."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT sales_order_id FROM sales_order WHERE last_updated < %s"
            " ORDER BY sales_order_id LIMIT 1",
            (at - timedelta(hours=1),),
        ).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = %s"
            " WHERE sales_order_id = %s",
            (at, row[0]),
        )
    return int(row[0])


def versions_in_warehouse(settings: Settings, sales_order_id: int, at: datetime) -> int:
    """How many rows of fact_sales_order hold that order's version dated `at`."""
    return sum(
        1
        for r in warehouse_rows.rows(settings, "fact_sales_order")
        if r[0] == sales_order_id and datetime.combine(r[3], r[4]) == at
    )


def transform_and_load(settings: Settings, s3: Any) -> list[Any]:
    transform_pending(settings, s3)
    return load_pending(settings, s3)


def a_late_change_missed(
    settings: Settings, s3: Any, facts: dict[str, set[Row]], seed: int = 4, runs: int = 1
) -> tuple[int, datetime]:
    """A warehouse loaded through a simulated day, then one sales order changed two hours
    behind the sales_order watermark, which `runs` normal runs miss: (order id, its date)."""
    init_warehouse(settings)
    run_and_expect(settings, s3, facts)
    simulate(source(settings), SimulationPlan(days=1, edits_per_weekday=2, seed=seed))
    run_and_expect(settings, s3, facts)
    late_at = watermark(settings, s3, "sales_order") - timedelta(hours=2)
    order = commit_late_change(source(settings), late_at)
    for _ in range(runs):  # normal runs never read that far back
        run_and_expect(settings, s3, facts)
    assert versions_in_warehouse(settings, order, late_at) == 0
    return order, late_at


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def test_window_maths() -> None:
    end = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert interval_window(end - timedelta(hours=1), end, timedelta(minutes=15), UTC_ZONE) == (
        Window(datetime(2026, 3, 1, 0, 45), datetime(2026, 3, 1, 2, 0), "backfill")
    )
    assert sweep_window(end, 26, UTC_ZONE) == Window(
        datetime(2026, 2, 28, 0, 0), datetime(2026, 3, 1, 2, 0), "sweep"
    )
    # an aware instant is put on the source's clock; a naive one is already on it
    london = ZoneInfo("Europe/London")
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert backfill.on_source_clock(summer, london) == datetime(2026, 7, 1, 13, 0)
    assert backfill.on_source_clock(datetime(2026, 7, 1, 12, 0), london) == datetime(
        2026, 7, 1, 12, 0
    )
    with pytest.raises(ConfigError, match="not before its end"):
        Window(datetime(2026, 1, 2), datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="sweep_hours must be positive"):
        sweep_window(end, 0, UTC_ZONE)
    # facts inserted and dimension rows inserted or changed; dim_date and unchanged rows not
    counts = {
        "fact_sales_order": {"staged": 9, "inserted": 2, "updated": 0},
        "dim_location": {"staged": 5, "inserted": 0, "updated": 1},
        "dim_counterparty": {"staged": 5, "inserted": 1, "updated": 0},
        "dim_date": {"staged": 3, "inserted": 3, "updated": 0},
    }
    assert missed_versions(counts) == 4


def test_a_change_two_hours_behind_the_watermark_is_missed_then_applied_once_by_a_window(
    settings: Settings, s3: Any
) -> None:
    facts: dict[str, set[Row]] = {}
    order, late_at = a_late_change_missed(settings, s3, facts, runs=2)
    with pytest.raises(AssertionError):
        assert_warehouse_matches(settings, facts)

    before = state_of(settings, s3)
    window = backfill.window_between(hour_of(late_at), hour_of(late_at) + timedelta(hours=1),
                                     UTC_ZONE)  # fmt: skip
    result = ingest(settings, s3, window=window)
    assert result.manifest["window"] == window.to_json()
    assert state_of(settings, s3).bookmarks == before.bookmarks, "a window moves no watermark"
    assert state_of(settings, s3).batch_id == result.batch_id
    loaded = transform_and_load(settings, s3)

    assert [r.batch_id for r in loaded] == [result.batch_id]
    assert versions_in_warehouse(settings, order, late_at) == 1
    assert missed_versions(loaded[0].tables) == 1
    assert_warehouse_matches(settings, facts)

    # the same window again, and a normal run after it: nothing changes
    digest = warehouse_rows.digest(settings)
    again = ingest(settings, s3, window=window)
    repeated = transform_and_load(settings, s3)
    assert [r.batch_id for r in repeated] == [again.batch_id]
    assert missed_versions(repeated[0].tables) == 0
    run_cycle(settings, s3)
    assert warehouse_rows.digest(settings) == digest
    assert state_of(settings, s3).bookmarks == before.bookmarks


def test_24_hourly_windows_leave_the_warehouse_equal_to_the_sql_expectation(
    settings: Settings, s3: Any
) -> None:
    init_warehouse(settings)
    facts: dict[str, set[Row]] = {}
    run_and_expect(settings, s3, facts)
    simulate(source(settings), SimulationPlan(days=1, edits_per_weekday=3, seed=12))
    run_and_expect(settings, s3, facts)
    end = hour_of(watermark(settings, s3, "sales_order")) + timedelta(hours=1)
    late = [end - timedelta(hours=h, minutes=20) for h in (2, 9, 17)]
    for at in late:
        commit_late_change(source(settings), at)
    run_and_expect(settings, s3, facts)  # misses all three

    def backfill_day() -> list[Any]:
        for hour in range(24, 0, -1):  # any order: each window is its own batch
            since = end - timedelta(hours=hour)
            ingest(settings, s3, window=backfill.window_between(since, since + timedelta(hours=1),
                                                                 UTC_ZONE))  # fmt: skip
        return transform_and_load(settings, s3)

    loaded = backfill_day()
    assert len(loaded) == 24
    assert sum(missed_versions(r.tables) for r in loaded) == len(late)
    assert_warehouse_matches(settings, facts)  # also: no version twice

    digest = warehouse_rows.digest(settings)
    assert sum(missed_versions(r.tables) for r in backfill_day()) == 0
    assert warehouse_rows.digest(settings) == digest


def test_the_sweep_applies_a_late_change_and_reports_it_as_missed(
    settings: Settings, s3: Any, tmp_path: Path
) -> None:
    facts: dict[str, set[Row]] = {}
    order, late_at = a_late_change_missed(settings, s3, facts, seed=6)
    mark = late_at + timedelta(hours=2)

    sink = JsonLinesMetrics(tmp_path / "metrics.jsonl", "test")
    ingestion = ObjectStore(s3, settings.ingestion_bucket)
    sweep_end = (hour_of(mark) + timedelta(hours=1)).replace(tzinfo=UTC)

    def sweep() -> int | None:
        run_cycle(settings, s3)  # the sweep run's incremental batch first, as in the DAG
        ingest(settings, s3, window=sweep_window(sweep_end, 26, UTC_ZONE))
        return report_sweep(ingestion, transform_and_load(settings, s3), sink)

    assert sweep() == 1
    assert versions_in_warehouse(settings, order, late_at) == 1
    assert_warehouse_matches(settings, facts)
    assert sweep() == 0  # nothing missed any more
    recorded = [r for r in read_local(sink.path) if r["name"] == "SweepMissedVersions"]
    assert [(r["value"], r["stage"]) for r in recorded] == [(1.0, "sweep"), (0.0, "sweep")]
    # a load without a sweep batch reports nothing
    run_cycle(settings, s3)
    assert report_sweep(ingestion, transform_and_load(settings, s3), sink) is None


def test_a_window_batch_refuses_what_it_cannot_do(settings: Settings, s3: Any) -> None:
    window = backfill.window_between(datetime(2024, 11, 1), datetime(2024, 11, 2), UTC_ZONE)
    with pytest.raises(ConfigError, match="never extracted"):
        ingest(settings, s3, window=window)
    first = ingest(settings, s3)
    with pytest.raises(ConfigError, match="after the newest batch"):
        ingest(settings, s3, datetime(2020, 1, 1, tzinfo=UTC), window=window)
    with pytest.raises(ConfigError, match="full refresh"):
        ingest(settings, s3, full_refresh=True, window=window)
    assert ingestion_manifest.read(ObjectStore(s3, settings.ingestion_bucket), first.batch_id)


def test_the_cli_ingests_a_window_and_rejects_half_a_window(
    settings: Settings, s3: Any, stack: StackEndpoints
) -> None:
    env = env_for(stack, settings)
    init_warehouse(settings)
    assert run_etl(env, "run").returncode == 0
    late_at = watermark(settings, s3, "sales_order") - timedelta(hours=2)
    order = commit_late_change(source(settings), late_at)
    assert run_etl(env, "run").returncode == 0
    assert versions_in_warehouse(settings, order, late_at) == 0

    since, until = hour_of(late_at), hour_of(late_at) + timedelta(hours=1)
    window = run_etl(env, "ingest", "--since", since.isoformat(), "--until", until.isoformat())
    assert window.returncode == 0, window.stderr
    assert f"window [{since.isoformat()}, {until.isoformat()}) re-read" in window.stdout
    assert run_etl(env, "transform").returncode == 0
    assert run_etl(env, "load").returncode == 0
    assert versions_in_warehouse(settings, order, late_at) == 1

    half = run_etl(env, "ingest", "--since", since.isoformat())
    assert (half.returncode, half.stderr) == (
        1,
        "error: --since and --until go together: give both ends of the window\n",
    )
    backwards = run_etl(env, "ingest", "--since", "2024-11-02", "--until", "2024-11-01")
    assert backwards.returncode == 1
    assert backwards.stderr.startswith("error: the window's start 2024-11-02T00:00:00 is not")
    assert len(backwards.stderr.splitlines()) == 1
