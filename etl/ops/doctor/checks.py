"""`check` (pure): every invariant over a `Lake`, one `Finding` per broken invariant, each
with what to do and the repair actions that are safe. The invariants live by subject:
check_records (manifests, files, chains, transform gaps), check_warehouse (the ledger and
the warehouse's keys), check_state (the stages' state objects) and check_debris (what a
stage that died leaves behind, judged by age)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from etl.ops.doctor.check_debris import check_orphans, check_stale_snapshots, check_uploads
from etl.ops.doctor.check_records import check_chain, check_files, check_readable, check_transformed
from etl.ops.doctor.check_state import (
    check_ingest_state,
    check_report_cursor,
    check_transform_state,
)
from etl.ops.doctor.check_warehouse import check_ledger, check_version_keys
from etl.ops.doctor.lake import Bucket, Lake, Report


def check(lake: Lake, min_age: timedelta) -> Report:
    """Every invariant over what `look` saw; `min_age` is how old debris must be to count."""
    report = Report()
    buckets: tuple[Bucket[Any], ...] = (lake.ingestion, lake.processed)
    check_readable(lake, report)
    check_files(lake, report)
    check_chain("ingestion", lake.ingestion, report)
    check_chain("processed", lake.processed, report)
    check_transformed(lake, report)
    check_ledger(lake, report)
    check_report_cursor(lake, report)
    check_ingest_state(lake, report)
    check_transform_state(lake, report)
    check_stale_snapshots(lake, min_age, report)
    for bucket in buckets:
        check_orphans(bucket, lake.now, min_age, report)
        check_uploads(bucket, lake.now, min_age, report)
    check_version_keys(lake, report)
    return report
