"""The ingest commit protocol: files, then the manifest, then the state.

Order is the guarantee: data files first (streamed from the source snapshot as they are
read), the manifest (the completion marker readers and the DAG's sensor wait for) second,
the watermark state last. A batch that fails before its manifest leaves no manifest and an
untouched watermark, so the next run extracts the same changes again under a new batch id,
after removing the failed batch's files (a killed process cannot tidy up, and Athena/Glue
read partitions, not manifests). A failure after the manifest but before the state is
recovered from the manifest, which carries the bookmarks.

Every step is taken as the lease holder: the lease is checked before each table, each
deletion, the manifest and the state. Every object is created with If-None-Match (a late
writer cannot replace a published file) and the state is replaced only if it is still
the version read under the lease. What the manifest and state say is etl.ingest.build's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from etl import layout
from etl.config import Settings
from etl.database import connect
from etl.ingest.build import BuiltIngest, Extraction, bookmark_before, extract_keys, future_dated
from etl.ingest.extract import Connection, TableExtract, check_source_columns, extract_table
from etl.ingest.watermark import IngestState
from etl.ingest.window import Window
from etl.lease import Lease
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.storage import ObjectStore
from etl.tables import ALL_TABLES, SOURCE_TABLES

logger = logging.getLogger("etl.ingest.run")  # one logger name for the whole stage

# Called with the name of each step as it completes ("table:<name>", "data_written",
# "manifest_written", "state_written"): progress reporting, and where fault-injection
# tests stop a batch.
StepHook = Callable[[str], None]

# how far before the newest complete batch the clean-up looks for unreferenced extracts
CLEANUP_LOOKBACK = timedelta(days=1)


def remove_unfinished_batches(
    store: ObjectStore, last_complete: str | None, lease: Lease | None = None
) -> int:
    """Delete the extracts no manifest references: attempts that died before their
    manifest (a killed process cannot tidy up), and the file a writer that lost its lease
    may have finished after its successor took over (its batch is older than the
    successor's). Manifest readers never see them, but Athena/Glue read every file of a
    partition and would count those rows twice. Looks back CLEANUP_LOOKBACK before the
    newest complete batch. Only the lease holder tidies, it checks the lease before each
    deletion, and a file whose batch has a manifest is never deleted."""
    horizon = (
        layout.batch_id_for(layout.batch_ts_of(last_complete) - CLEANUP_LOOKBACK)
        if last_complete
        else ""
    )
    complete = {
        layout.batch_id_of_manifest(key)
        for key in store.keys(
            layout.MANIFEST_PREFIX, start_after=layout.manifest_key(horizon) if horizon else ""
        )
    }
    removed = 0
    for table in ALL_TABLES:
        after = layout.extract_key(table, horizon) if horizon else ""
        for key in list(store.keys(f"{table}/", start_after=after)):
            batch_id = layout.batch_id_of_data_key(table, key, "csv")
            if batch_id is None or batch_id in complete:  # not ours, or referenced
                continue
            if lease is not None:
                lease.check(f"deleting {key}")
            if store.get_json(layout.manifest_key(batch_id)) is not None:
                continue  # completed since the listing: referenced, never deleted
            store.delete(key)
            removed += 1
    if removed:
        log_event(logger, "unfinished_batch_files_removed", files=removed, after=horizon)
    return removed


def write_files(
    settings: Settings,
    store: ObjectStore,
    state: IngestState,
    batch_id: str,
    full_refresh: bool,
    window: Window | None,
    lease: Lease,
    step: StepHook,
) -> Extraction:
    """Extract every configured table in one REPEATABLE READ snapshot (a batch is
    consistent across tables: an order, its transaction and its payment arrive together),
    each streamed into its create-only object; the lease is checked before each table."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    keys = extract_keys(settings.tables, batch_id, lease.generation)
    extracts: dict[str, TableExtract] = {}
    with connect(settings.totesys_db_url, "totesys") as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            clock = conn.execute("SELECT localtimestamp").fetchone()
            source_now = clock[0] if clock else None  # the snapshot's start, source clock
            for name in settings.tables:
                lease.check(f"extracting {name}")  # a paused writer stops here on resuming
                extracts[name] = _write_table(
                    conn, settings, store, state, name, keys[name], full_refresh, window,
                    source_now,
                )  # fmt: skip
                step(f"table:{name}")
    step("data_written")
    seconds = time.perf_counter() - started
    return Extraction(started_at, datetime.now(UTC), seconds, source_now, extracts)


def _write_table(
    conn: Connection,
    settings: Settings,
    store: ObjectStore,
    state: IngestState,
    name: str,
    key: str,
    full_refresh: bool,
    window: Window | None,
    source_now: datetime | None,
) -> TableExtract:
    """One table's changes (or its window's rows) streamed to `key`."""
    table = SOURCE_TABLES[name]
    extra = check_source_columns(conn, table)
    if extra:
        log_event(logger, "source_columns_ignored", logging.WARNING, table=name,
                  columns=",".join(extra))  # fmt: skip
    extract = extract_table(
        conn, table, bookmark_before(state, name, full_refresh), settings.overlap, store, key,
        None if window is None else (window.since, window.until),
    )  # fmt: skip
    if future_dated(extract, source_now):
        log_event(logger, "future_dated_rows", logging.WARNING, table=name,
                  newest=extract.extracted_max, source_now=source_now)  # fmt: skip
    log_event(
        logger, "table_extracted", table=name, rows=extract.rows,
        bytes=extract.written.bytes if extract.written else 0, seconds=extract.seconds,
    )  # fmt: skip
    return extract


def commit(
    store: ObjectStore, built: BuiltIngest, state_etag: str | None, lease: Lease, step: StepHook
) -> None:
    """Once every file is written: the manifest (the batch exists from here on), then the
    state, replaced only from the version (`state_etag`) read under the lease."""
    lease.check("the manifest")
    ingestion_manifest.write(store, built.manifest)
    step("manifest_written")
    lease.check("the state")
    store.replace_json(layout.STATE_KEY, built.state_after.to_json(), state_etag)
    step("state_written")
