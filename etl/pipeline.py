"""One full cycle, `python -m etl run`: ingest, transform what is pending, load what is pending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from etl.config import Settings
from etl.ingest import IngestResult, ingest
from etl.load.loader import LoadResult, load_pending
from etl.transform.batch import TransformResult, transform_pending


@dataclass(frozen=True)
class CycleResult:
    ingested: IngestResult
    transformed: list[TransformResult]
    loaded: list[LoadResult]


def run_cycle(
    settings: Settings, s3_client: Any, batch_ts: datetime | None = None, full_refresh: bool = False
) -> CycleResult:
    ingested = ingest(settings, s3_client, batch_ts, full_refresh)
    transformed = transform_pending(settings, s3_client)
    loaded = load_pending(settings, s3_client)
    return CycleResult(ingested, transformed, loaded)
