"""The stages as the CLI, the soak and the DAG run them: each run's metrics recorded.

Thin wrappers, so a stage's own module knows nothing of metrics: the wrapper times the
stage, reads what it did from its result (manifest entries, load counts), asks how many
batches still wait for the stage, and sends it all to the sink in one call. A failed stage
records nothing here (Airflow's listener records the failed task; see plugins/). With
metrics switched off (NoMetrics, a bare CLI call) the counts and the lag are not measured
at all: after a load the lag is a scan of the fact tables of both databases."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from etl.config import Settings
from etl.ingest.run import IngestResult, ingest
from etl.ingest.window import Window
from etl.load.apply import Connection
from etl.load.loader import LoadResult, LoadRun, loading
from etl.ops import metrics
from etl.ops.freshness import FreshnessCheck, check, check_on, set_aside_versions
from etl.ops.metrics import Metric, MetricsSink, NoMetrics
from etl.ops.status import pending_load, pending_transform
from etl.storage import ObjectStore
from etl.transform.batch import TransformResult, transform_pending


def monitored_ingest(
    settings: Settings,
    s3: Any,
    sink: MetricsSink,
    batch_ts: datetime | None = None,
    full_refresh: bool = False,
    window: Window | None = None,
) -> IngestResult:
    started = time.perf_counter()
    result = ingest(settings, s3, batch_ts, full_refresh, window=window)
    tables = {} if result.skipped_reason else result.manifest["tables"]
    sink.send(metrics.ingest_run(tables, time.perf_counter() - started))
    return result


def monitored_transform(
    settings: Settings, s3: Any, sink: MetricsSink, up_to: str | None = None
) -> list[TransformResult]:
    started = time.perf_counter()
    results = transform_pending(settings, s3, up_to)
    seconds = time.perf_counter() - started
    if isinstance(sink, NoMetrics):  # no S3 listing for a count nobody records
        return results
    waiting = pending_transform(
        ObjectStore(s3, settings.ingestion_bucket), ObjectStore(s3, settings.processed_bucket)
    )
    sink.send([
        *metrics.transform_run([r.manifest["tables"] for r in results], seconds, len(waiting)),
        *metrics.rejected_rows(r.manifest["rejects"] for r in results),
    ])  # fmt: skip
    return results


def monitored_load(
    settings: Settings,
    s3: Any,
    sink: MetricsSink,
    report_set_aside: Callable[[Connection], object] | None = None,
    measure_lag: bool = True,
) -> list[LoadResult]:
    """load_pending, then on the run's own warehouse connection (the lease released): the
    metrics' reads and `report_set_aside`, the DAG's email of the rows load set aside. A
    load run opens two warehouse connections, the lease's and this one. `measure_lag`
    False leaves WarehouseLagSeconds to a freshness check that follows the load (the DAG's
    freshness task): one lag scan per run, not two."""
    started = time.perf_counter()
    with loading(settings, s3) as run:
        seconds = time.perf_counter() - started
        if not isinstance(sink, NoMetrics):  # no listing, no lag scan of both databases for nothing
            sink.send(_load_metrics(settings, s3, run, seconds, measure_lag))
        if report_set_aside is not None:
            report_set_aside(run.conn)
    return run.results


def _load_metrics(
    settings: Settings, s3: Any, run: LoadRun, seconds: float, measure_lag: bool
) -> list[Metric]:
    processed = ObjectStore(s3, settings.processed_bucket)
    waiting = pending_load(processed, run.last_loaded)
    recorded = metrics.load_run([r.tables for r in run.results], seconds, len(waiting))
    if measure_lag and settings.totesys_db_url:  # the lag just after a load
        now = datetime.now(UTC).replace(tzinfo=None)
        lag = check_on(run.conn, settings, now, timedelta(0), processed)
        recorded.append(metrics.warehouse_lag(lag.waited))
    return recorded


def monitored_freshness(
    settings: Settings, sink: MetricsSink, now: datetime, threshold: timedelta, s3: Any = None
) -> FreshnessCheck:
    """Rows set aside on purpose (open rejects in the processed bucket, when `s3` is given,
    and facts waiting for a dimension row) are reported apart, not as a freshness breach."""
    processed = (
        ObjectStore(s3, settings.processed_bucket) if s3 and settings.processed_bucket else None
    )
    result = check(settings, now, threshold, set_aside_versions(settings, processed))
    sink.send([metrics.warehouse_lag(result.waited)])
    return result
