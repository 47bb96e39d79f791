"""The processed manifest: `_manifests/<batch_id>.json` in the processed bucket.

Transform writes it after every parquet file and the remodel state snapshot of the batch,
and before `_state/transform.json`; load reads it to find each warehouse table's file and
check its sha256. A processed batch has the id of the ingestion batch it came from. Read
and written only here; the fields are documented in docs/architecture.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, cast

from etl import layout
from etl.manifests import FORMAT_VERSION, ManifestFormatError, check_document
from etl.storage import ObjectStore, WrittenObject

KIND = "processed"


class ProcessedTableEntry(TypedDict):
    """One warehouse table of one batch; only tables with rows are listed."""

    rows: int  # rows in the parquet file
    file: str  # key of the parquet in the processed bucket
    bytes: int  # size of that object
    sha256: str  # hex digest of that object, checked by load
    columns: list[str]  # the parquet's columns, in order


class ProcessedManifest(TypedDict):
    format_version: int  # 1; absent in manifests written before it existed (read as 1)
    batch_id: str  # the ingestion batch this came from
    ingestion_manifest: str  # that batch's manifest key in the ingestion bucket
    previous_batch_id: str | None  # the processed batch before this one (None for the first)
    tables: dict[str, ProcessedTableEntry]  # warehouse tables with rows in this batch
    finished_at: str  # ISO 8601 UTC, just before the manifest was written
    seconds: float  # wall time of the batch's transform
    # warehouse table -> the rows this batch set aside (layout.rejects_key), only tables
    # with such rows; absent in manifests written before rows were set aside (read as {})
    rejects: dict[str, ProcessedTableEntry]


OPTIONAL = ("rejects",)
REQUIRED = tuple(name for name in ProcessedManifest.__annotations__ if name not in OPTIONAL)
ENTRY_REQUIRED = tuple(ProcessedTableEntry.__annotations__)


def table_entry(written: WrittenObject, rows: int, columns: list[str]) -> ProcessedTableEntry:
    return {
        "rows": rows,
        "file": written.key,
        "bytes": written.bytes,
        "sha256": written.sha256,
        "columns": columns,
    }


def new(
    batch_id: str,
    previous_batch_id: str | None,
    tables: dict[str, ProcessedTableEntry],
    finished_at: datetime,
    seconds: float,
    rejects: dict[str, ProcessedTableEntry] | None = None,
) -> ProcessedManifest:
    """A manifest of the current format version."""
    return {
        "format_version": FORMAT_VERSION,
        "batch_id": batch_id,
        "ingestion_manifest": layout.manifest_key(batch_id),
        "previous_batch_id": previous_batch_id,
        "tables": tables,
        "finished_at": finished_at.isoformat(),
        "seconds": round(seconds, 3),
        "rejects": rejects or {},
    }


def parse(document: Any, where: str) -> ProcessedManifest:
    """A stored document as a manifest of the current version; refuses an unknown version
    or missing fields with one line naming `where` (the object's s3:// address)."""
    check_document(document, where, KIND, REQUIRED[1:], ENTRY_REQUIRED)
    rejects = document.get("rejects", {})
    if not isinstance(rejects, dict) or not all(
        isinstance(e, dict) and all(name in e for name in ENTRY_REQUIRED) for e in rejects.values()
    ):
        raise ManifestFormatError(
            f"{where}: {KIND} manifest 'rejects' is not a map of file entries"
        )
    return cast(
        ProcessedManifest, {**document, "format_version": FORMAT_VERSION, "rejects": rejects}
    )


def rejected_rows(manifest: ProcessedManifest) -> int:
    """How many rows the batch set aside."""
    return sum(int(entry["rows"]) for entry in manifest["rejects"].values())


def read_key(store: ObjectStore, key: str) -> ProcessedManifest | None:
    """The manifest stored at `key`, or None when there is none."""
    document = store.get_json(key)
    return None if document is None else parse(document, f"s3://{store.bucket}/{key}")


def read(store: ObjectStore, batch_id: str) -> ProcessedManifest | None:
    return read_key(store, layout.manifest_key(batch_id))


def write(store: ObjectStore, manifest: ProcessedManifest) -> str:
    """Store the manifest under its batch id; returns its key."""
    key = layout.manifest_key(manifest["batch_id"])
    store.put_json(key, manifest)
    return key
