"""The rejects area of the processed bucket, read back: which batches set rows aside and
which of them have been reported to the team.

Each batch with set-aside rows is reported once (the DAG emails it). A cursor,
`_state/rejects_reported.json`, names the newest batch reported; it only moves forward and
is replaced conditionally, so two reporters never both move it, and the DAG runs one
reporter at a time (its report task's `max_active_tis_per_dag=1`), since two that read the
cursor together would both send before either moved it. A report that could not be sent
leaves the cursor where it was, and the next run sends it: an email may, rarely, go twice
(a crash between sending and moving the cursor), never not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from etl import layout
from etl.manifests import processed as processed_manifest
from etl.storage import ObjectStore
from etl.transform.batch import read_parquet
from etl.transform.rejects import REJECT_SCHEMA

REPORTED_KEY = "_state/rejects_reported.json"


@dataclass(frozen=True)
class BatchRejects:
    batch_id: str
    rows: pa.Table  # rejects.REJECT_SCHEMA


@dataclass
class Cursor:
    """The newest batch reported, and the version of the cursor object it was read in."""

    batch_id: str
    etag: str | None


def read_cursor(processed: ObjectStore) -> Cursor:
    document, etag = processed.get_json_version(REPORTED_KEY)  # one GET, no HEAD first
    if document is not None and not isinstance(document, dict):
        raise processed.damaged(REPORTED_KEY, "not a report cursor document")
    return Cursor(str((document or {}).get("batch_id") or ""), etag)


def batch_rejects(processed: ObjectStore, batch_id: str) -> BatchRejects | None:
    """The rows one committed batch set aside (None when its manifest lists none)."""
    manifest = processed_manifest.read(processed, batch_id)
    if manifest is None or not manifest["rejects"]:
        return None
    tables = [REJECT_SCHEMA.empty_table()]
    for entry in manifest["rejects"].values():
        rows = read_parquet(processed, entry["file"])
        if rows is not None:
            tables.append(rows.cast(REJECT_SCHEMA))
    return BatchRejects(batch_id, pa.concat_tables(tables))


def unreported(processed: ObjectStore, cursor: Cursor) -> Iterator[BatchRejects]:
    """Batches after the cursor that set rows aside, oldest first. Found by listing the
    rejects area (small: only batches with rejects have files there), then confirmed by
    their manifest (a dead attempt's leftover is no batch)."""
    found = {layout.batch_id_of_rejects_key(k) for k in processed.keys(layout.REJECTS_PREFIX)}
    for batch_id in sorted(b for b in found if b is not None and b > cursor.batch_id):
        rejects = batch_rejects(processed, batch_id)
        if rejects is not None:
            yield rejects


def mark_reported(processed: ObjectStore, cursor: Cursor, batch_id: str) -> None:
    """Move the cursor to `batch_id`, only from the version it was read in (a concurrent
    reporter that moved it first makes this fail with LeaseLostError)."""
    cursor.etag = processed.replace_json(REPORTED_KEY, {"batch_id": batch_id}, cursor.etag)
    cursor.batch_id = batch_id
