"""What the nightly sweep found: the versions a sweep batch added to the warehouse, which the
incremental path had missed, sent as the SweepMissedVersions metric after a load."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from etl.ingest.window import Window, window_of
from etl.load.loader import LoadResult
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.ops import metrics
from etl.ops.metrics import MetricsSink
from etl.storage import ObjectStore
from etl.warehouse import WAREHOUSE_TABLES

logger = logging.getLogger("etl.ops.sweep")


def missed_versions(tables: Mapping[str, Mapping[str, int]]) -> int:
    """Versions a window batch added to the warehouse: the fact versions it inserted plus the
    dimension rows it inserted or actually changed (load's counts; an upsert that changes
    nothing counts nothing). dim_date is left out: its rows are derived from facts' dates,
    not versions of a source row. Because batches load in order, everything the incremental
    batches before it delivered is already there: what is left is what they missed."""
    total = 0
    for name, counts in tables.items():
        table = WAREHOUSE_TABLES.get(name)
        if table is None or name == "dim_date":
            continue
        total += int(counts.get("inserted", 0))
        if table.kind == "dim":
            total += int(counts.get("updated", 0))
    return total


def sweep_missed(
    loaded: Iterable[tuple[Window | None, Mapping[str, Mapping[str, int]]]],
) -> int | None:
    """Missed versions summed over the loaded batches that are sweeps (None: no sweep loaded)."""
    found: int | None = None
    for window, tables in loaded:
        if window is not None and window.kind == "sweep":
            found = (found or 0) + missed_versions(tables)
    return found


def report_sweep(
    ingestion: ObjectStore, loaded: Sequence[LoadResult], sink: MetricsSink
) -> int | None:
    """After a load: if it loaded a sweep batch, how many versions that batch added (the
    versions the incremental path had missed), sent as SweepMissedVersions; else None."""
    found = sweep_missed(
        (window_of(ingestion_manifest.read(ingestion, result.batch_id)), result.tables)
        for result in loaded
    )
    if found is not None:
        sink.send([metrics.sweep_missed_versions(found)])
        log_event(logger, "sweep_missed_versions", versions=found)
    return found
