"""One full cycle, `python -m etl run`: ingest, transform what is pending, load what is pending.

Each stage takes its own lease (etl.lease) and releases it when it ends, so several `run`s
started together pass each other stage by stage: a second ingest waits for the first,
then extracts what changed since; a stage that cannot get its lease within the wait ends
the cycle with LeaseBusyError (exit 75) without having written anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from etl.config import Settings
from etl.ingest.run import IngestResult
from etl.load.loader import LoadResult
from etl.ops.metrics import MetricsSink, NoMetrics
from etl.ops.monitoring import monitored_ingest, monitored_load, monitored_transform
from etl.transform.batch import TransformResult


@dataclass(frozen=True)
class CycleResult:
    ingested: IngestResult
    transformed: list[TransformResult]
    loaded: list[LoadResult]


def run_cycle(
    settings: Settings,
    s3_client: Any,
    batch_ts: datetime | None = None,
    full_refresh: bool = False,
    sink: MetricsSink | None = None,
) -> CycleResult:
    sink = sink or NoMetrics()
    ingested = monitored_ingest(settings, s3_client, sink, batch_ts, full_refresh)
    transformed = monitored_transform(settings, s3_client, sink)
    loaded = monitored_load(settings, s3_client, sink)
    return CycleResult(ingested, transformed, loaded)
