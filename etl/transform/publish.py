"""The transform commit protocol: parquet files, then the manifest, then the state.

A processed batch's data and set-aside files are written first, then its state snapshot
under its own prefix, then its manifest (the batch exists from here on), then the state
pointer (`_state/transform.json`), and last the tidy-up of what earlier snapshots and
attempts left. A crash at any point leaves the previous state intact: rerunning recomputes
the same files (same bytes), and a batch whose manifest exists is recovered rather than
redone.

Every commit point and clean-up deletion is checked against the transform lease first.
Objects are created with If-None-Match; the leftovers of an attempt that died (files and
snapshots of batches after the last processed one, which no manifest references) are
replaced by the next attempt with If-Match on the version seen under the lease, not
deleted first; the state is replaced only from the version read under the lease. What
goes in each file is etl.transform.build's.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from etl import layout
from etl.errors import LeaseLostError
from etl.lease import Lease
from etl.logs import log_event
from etl.manifests import processed as processed_manifest
from etl.manifests.processed import ProcessedManifest, ProcessedTableEntry
from etl.storage import ObjectStore
from etl.transform.build import (
    SNAPSHOT_PREFIX,
    STATE_KEY,
    BuiltBatch,
    data_files,
    output_key,
    set_aside_files,
    snapshot_files,
)
from etl.transform.spool import ParquetSpool
from etl.warehouse import WAREHOUSE_TABLES

logger = logging.getLogger("etl.transform")  # one logger name for the whole stage

StepHook = Callable[[str], None]
Entries = dict[str, ProcessedTableEntry]


@dataclass
class StateVersion:
    """The ETag of the state object this run may replace (None: there is none yet)."""

    etag: str | None


def parquet_bytes(table: pa.Table) -> bytes:
    """How every parquet object of the processed bucket is written (zstd); doctor's
    rebuilt snapshots too."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def write_table_data(
    processed: ObjectStore, key: str, data: ParquetSpool | pa.Table
) -> ProcessedTableEntry:
    """One warehouse table's (or its set-aside rows') parquet at `key`, as a manifest entry."""
    if isinstance(data, ParquetSpool):
        return processed_manifest.table_entry(
            data.upload(processed, key), data.rows, data.schema.names
        )
    written = processed.put_bytes(key, parquet_bytes(data))
    return processed_manifest.table_entry(written, data.num_rows, data.column_names)


def write_batch_files(
    processed: ObjectStore, built: BuiltBatch, attempt: int | None, written: list[str]
) -> tuple[Entries, Entries]:
    """(data entries, set-aside entries) of the batch's parquet files, each key appended to
    `written` as soon as it exists."""
    tables: Entries = {}
    for name, key, data in data_files(built, attempt):
        written.append(key)
        tables[name] = write_table_data(processed, key, data)
    set_aside: Entries = {}
    for name, key, rows in set_aside_files(built, attempt):
        written.append(key)
        set_aside[name] = write_table_data(processed, key, rows)
    return tables, set_aside


def write_files(
    processed: ObjectStore, built: BuiltBatch, step: StepHook, lease: Lease | None
) -> tuple[Entries, Entries]:
    """The batch's data and set-aside files, then its state snapshot. On failure what was
    written is removed (unreferenced files are invisible anyway), but only as the lease
    holder: after a takeover these keys may be the successor's files."""
    written: list[str] = []
    try:
        entries = write_batch_files(
            processed, built, None if lease is None else lease.generation, written
        )
        step("data_written")
        for key, table in snapshot_files(built.batch_id, built.state_after).items():
            processed.put_bytes(key, parquet_bytes(table))
        step("state_snapshot_written")
    except BaseException as error:
        if not isinstance(error, LeaseLostError):
            with contextlib.suppress(Exception):
                if lease is not None:
                    lease.check("tidying")
                for key in written:
                    processed.delete(key)
        raise
    return entries


def commit_batch(
    processed: ObjectStore,
    document: ProcessedManifest,
    step: StepHook,
    lease: Lease | None,
    state_version: StateVersion | None,
) -> str:
    """The commit protocol once a batch's files and snapshot are written: the manifest (the
    batch exists from here on), then the state pointer, then the tidy-up of what earlier
    snapshots and attempts left. Every write is checked against the lease first."""
    batch_id = document["batch_id"]
    if lease is not None:
        lease.check("the manifest")
    manifest_key = processed_manifest.write(processed, document)
    step("manifest_written")
    if lease is not None:
        lease.check("the state")
    if state_version is None:
        processed.put_json(STATE_KEY, {"batch_id": batch_id})
    else:
        state_version.etag = processed.replace_json(
            STATE_KEY, {"batch_id": batch_id}, state_version.etag
        )
    step("state_written")
    remove_old_snapshots(processed, batch_id, lease)
    remove_leftovers(processed, batch_id, lease)
    return manifest_key


def remove_leftovers(processed: ObjectStore, batch_id: str, lease: Lease | None) -> None:
    """Delete the leftovers of this batch that this attempt did not write again (an earlier
    attempt's files carry its own lease generation): unreferenced now that the manifest is
    committed, removed as the lease holder."""
    leftovers = [
        key
        for key in processed.replaceable
        if key.startswith(f"{SNAPSHOT_PREFIX}{batch_id}/") or _leftover_batch_id(key) == batch_id
    ]
    for key in leftovers:
        if lease is not None:
            lease.check(f"deleting {key}")
        processed.delete(key)
        del processed.replaceable[key]


def remove_old_snapshots(processed: ObjectStore, batch_id: str, lease: Lease | None) -> int:
    """Delete the snapshots of batches before the newest processed manifest: every other
    one, not only the previous batch's, since a run killed after its manifest but before
    this point left its own predecessor's behind. The newest manifest's snapshot (the one
    load_state reads) and anything newer are never touched, whoever runs this."""
    later = list(processed.keys(layout.MANIFEST_PREFIX, layout.manifest_key(batch_id)))
    newest = layout.batch_id_of_manifest(later[-1]) if later else batch_id
    removed = 0
    for key in list(processed.keys(SNAPSHOT_PREFIX)):
        if key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0] >= newest:
            continue
        if lease is not None:
            lease.check(f"deleting {key}")
        processed.delete(key)
        removed += 1
    return removed


def adopt_unfinished_outputs(processed: ObjectStore, last_processed: str | None) -> int:
    """Mark what attempts that died before their manifest left (output files and
    snapshots of batches after the last processed one, which no manifest references) as
    replaceable in the version seen now. The next attempt of the batch writes the same
    keys (transform is deterministic) with If-Match on that version instead of deleting
    them first: a writer that lost its lease and resumes later cannot delete or replace
    what its successor wrote over them. Returns how many were adopted."""
    adopted = 0
    prefixes = [f"{name}/" for name in WAREHOUSE_TABLES] + [SNAPSHOT_PREFIX, layout.REJECTS_PREFIX]
    complete: dict[str, bool] = {}
    for prefix in prefixes:
        after = (
            output_key(prefix.rstrip("/"), last_processed)
            if last_processed and prefix not in (SNAPSHOT_PREFIX, layout.REJECTS_PREFIX)
            else ""
        )
        for key, etag in list(processed.versions(prefix, start_after=after)):
            batch_id = _output_batch_id(prefix, key)
            if batch_id is None or (last_processed is not None and batch_id <= last_processed):
                continue
            if batch_id not in complete:
                complete[batch_id] = processed.get_json(layout.manifest_key(batch_id)) is not None
            if not complete[batch_id]:
                processed.replaceable[key] = etag
                adopted += 1
    if adopted:
        log_event(logger, "unfinished_transform_files_adopted", files=adopted, after=last_processed)
    return adopted


def _output_batch_id(prefix: str, key: str) -> str | None:
    """The batch id of an output file, set-aside file or snapshot key, None for anything
    else."""
    if prefix == SNAPSHOT_PREFIX:
        candidate = key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0]
        try:
            layout.batch_ts_of(candidate)
        except ValueError:
            return None
        return candidate
    if prefix == layout.REJECTS_PREFIX:
        return layout.batch_id_of_rejects_key(key)
    return layout.batch_id_of_data_key(prefix.rstrip("/"), key, "parquet")


def _leftover_batch_id(key: str) -> str | None:
    """The batch id of a replaceable leftover key (data or set-aside file)."""
    if key.startswith(layout.REJECTS_PREFIX):
        return layout.batch_id_of_rejects_key(key)
    return _output_batch_id(key.split("/", 1)[0] + "/", key)
