"""The ingestion manifest: `_manifests/<batch_id>.json` in the ingestion bucket.

Ingest writes it after every CSV file of the batch and before the watermark state, so it
is the batch's completion marker (the DAG's sensor waits for it) and carries the bookmarks
the state is recovered from. Transform reads it to find each table's file and check its
sha256. Read and written only here; the fields are documented in docs/architecture.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict, cast

from etl import layout
from etl.manifests import FORMAT_VERSION, check_document
from etl.storage import ObjectStore, WrittenObject

KIND = "ingestion"


class IngestionTableEntry(TypedDict):
    """One source table in one batch. A table with no changes has no file: `file` and
    `sha256` are None and `rows` and `bytes` 0."""

    rows: int  # changed rows extracted
    file: str | None  # key of the CSV in the ingestion bucket
    bytes: int  # size of that object
    sha256: str | None  # hex digest of that object, checked by transform
    columns: list[str]  # the CSV's header: the contract columns of the table, in order
    watermark_before: str | None  # ISO last_updated bookmark before the batch (None: full)
    watermark_after: str | None  # ISO last_updated bookmark after the batch
    seconds: float  # time spent extracting this table


class IngestionManifest(TypedDict):
    format_version: int  # 1; absent in manifests written before it existed (read as 1)
    batch_id: str  # YYYYMMDDTHHMMSSffffffZ, the batch timestamp in UTC
    batch_ts: str  # the same instant, ISO 8601
    started_at: str  # ISO 8601 UTC
    finished_at: str  # ISO 8601 UTC, just before the manifest was written
    seconds: float  # wall time of the batch
    full_refresh: bool  # whether bookmarks were ignored
    overlap_seconds: float  # re-read window behind each watermark
    previous_batch_id: str | None  # the batch before this one (None for the first)
    tables: dict[str, IngestionTableEntry]  # every table extracted, with or without rows
    state_after: dict[str, Any]  # the watermark state after this batch (IngestState.to_json)
    # a window batch (a backfill or the nightly sweep): {"since", "until", "kind"}, the
    # `last_updated` range it re-read on the source's clock (etl.ingest.window.Window.to_json);
    # None for an incremental batch. Absent in manifests written before it existed, which
    # read as None, so format_version stays 1.
    window: NotRequired[dict[str, str] | None]


OPTIONAL = ("window",)
REQUIRED = tuple(name for name in IngestionManifest.__annotations__ if name not in OPTIONAL)
ENTRY_REQUIRED = tuple(IngestionTableEntry.__annotations__)


def table_entry(
    rows: int,
    written: WrittenObject | None,
    columns: list[str],
    watermark_before: datetime | None,
    watermark_after: datetime | None,
    seconds: float,
) -> IngestionTableEntry:
    return {
        "rows": rows,
        "file": written.key if written else None,
        "bytes": written.bytes if written else 0,
        "sha256": written.sha256 if written else None,
        "columns": columns,
        "watermark_before": _iso(watermark_before),
        "watermark_after": _iso(watermark_after),
        "seconds": round(seconds, 3),
    }


def new(
    batch_id: str,
    started_at: datetime,
    finished_at: datetime,
    seconds: float,
    full_refresh: bool,
    overlap_seconds: float,
    previous_batch_id: str | None,
    tables: dict[str, IngestionTableEntry],
    state_after: dict[str, Any],
    window: dict[str, str] | None = None,
) -> IngestionManifest:
    """A manifest of the current format version."""
    return {
        "format_version": FORMAT_VERSION,
        "batch_id": batch_id,
        "batch_ts": layout.batch_ts_of(batch_id).isoformat(),
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "seconds": round(seconds, 3),
        "full_refresh": full_refresh,
        "overlap_seconds": overlap_seconds,
        "previous_batch_id": previous_batch_id,
        "tables": tables,
        "state_after": state_after,
        "window": window,
    }


def empty(batch_id: str) -> IngestionManifest:
    """What a skipped batch id reports (never stored): nothing extracted, no state."""
    instant = layout.batch_ts_of(batch_id)
    return new(batch_id, instant, instant, 0.0, False, 0.0, None, {}, {})


def parse(document: Any, where: str) -> IngestionManifest:
    """A stored document as a manifest of the current version; refuses an unknown version
    or missing fields with one line naming `where` (the object's s3:// address)."""
    check_document(document, where, KIND, REQUIRED[1:], ENTRY_REQUIRED)
    return cast(IngestionManifest, {**document, "format_version": FORMAT_VERSION})


def read_key(store: ObjectStore, key: str) -> IngestionManifest | None:
    """The manifest stored at `key`, or None when there is none."""
    document = store.get_json(key)
    return None if document is None else parse(document, f"s3://{store.bucket}/{key}")


def read(store: ObjectStore, batch_id: str) -> IngestionManifest | None:
    return read_key(store, layout.manifest_key(batch_id))


def write(store: ObjectStore, manifest: IngestionManifest) -> str:
    """Store the manifest under its batch id; returns its key."""
    key = layout.manifest_key(manifest["batch_id"])
    store.put_json(key, manifest)
    return key


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
