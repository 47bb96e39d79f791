"""A finished past run that is cleared and re-run re-reads its own interval (plus the
overlap), through the same helper the DAG's ingest task calls, on the real stack; the same
run never cleared (one that merely waited behind a later batch) adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from totesys_airflow.config import DagConfig
from totesys_airflow.intervals import ingest_for_run, load_wanted, plan_run

from etl.config import Settings
from etl.ingest.run import load_state
from etl.ops.metrics import NoMetrics
from etl.storage import ObjectStore
from simulator.expectations import Row
from tests.etl.conftest import new_bucket, s3, settings, source_url, warehouse_url  # noqa: F401
from tests.etl.ingest.test_window import (
    a_late_change_missed,
    transform_and_load,
    versions_in_warehouse,
)
from tests.etl.load.test_loader import assert_warehouse_matches

CONFIG = DagConfig()  # every 5 minutes, a 15-minute overlap


def five_minute_fire_after(at: datetime) -> datetime:
    """The end of the scheduled interval that holds `at` (naive UTC, the source's clock)."""
    start = at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)
    return (start + timedelta(minutes=5)).replace(tzinfo=UTC)


def test_a_cleared_past_run_re_reads_its_interval_and_an_uncleared_one_adds_nothing(
    settings: Settings,  # noqa: F811
    s3: Any,  # noqa: F811
) -> None:
    facts: dict[str, set[Row]] = {}
    order, late_at = a_late_change_missed(settings, s3, facts)

    # the scheduled run of the interval holding the change, long finished: its batch id is
    # older than the newest batch, so ingest finds it covered
    end = five_minute_fire_after(late_at)
    plan = plan_run("scheduled", None, end, CONFIG)
    assert (plan.mode, plan.start, plan.end) == ("incremental", end - timedelta(minutes=5), end)
    store = ObjectStore(s3, settings.ingestion_bucket)
    newest = load_state(store).batch_id

    waited = ingest_for_run(settings, s3, NoMetrics(), plan, 0, end, False, CONFIG)
    assert waited.batch_id != newest and load_state(store).batch_id == newest  # nothing new
    assert not load_wanted(plan, 0)

    rerun = ingest_for_run(settings, s3, NoMetrics(), plan, 1, end, False, CONFIG)
    assert rerun.manifest["window"] is not None and load_state(store).batch_id == rerun.batch_id
    assert load_wanted(plan, 1)
    loaded = transform_and_load(settings, s3)

    assert [r.batch_id for r in loaded] == [rerun.batch_id]
    assert versions_in_warehouse(settings, order, late_at) == 1
    assert_warehouse_matches(settings, facts)  # facts already hold the late version
