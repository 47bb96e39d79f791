"""One ingestion batch: every configured table's changes, then the manifest, then state.

Order is the guarantee: data files first, the manifest (the completion marker readers and
the DAG's sensor wait for) second, the watermark state last. A batch that fails before its
manifest leaves no manifest and an untouched watermark, so the next run extracts the same
changes again under a new batch id, after removing the failed batch's files (a killed
process cannot tidy up, and Athena/Glue read partitions, not manifests). A failure after
the manifest but before the state is recovered from the manifest, which carries the
bookmarks.

All tables are read in one REPEATABLE READ snapshot, so a batch is consistent across
tables (an order, its transaction and its payment arrive together).

One ingest writes at a time, whatever starts it: the whole batch runs under the ingest
lease (etl.lease), checked again before every deletion, the manifest and the state. Every
object is created with If-None-Match (a late writer cannot replace a published file) and
the state is replaced only if it is still the version read under the lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from etl import layout
from etl.config import Settings
from etl.database import connect
from etl.errors import ConfigError
from etl.ingest.extract import TableExtract, check_source_columns, extract_table
from etl.ingest.watermark import Bookmark, IngestState
from etl.ingest.window import Window
from etl.lease import Lease, hold
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.storage import ObjectStore
from etl.tables import ALL_TABLES, SOURCE_TABLES

logger = logging.getLogger("etl.ingest.run")

# Called with the name of each step as it completes ("table:<name>", "data_written",
# "manifest_written", "state_written"): progress reporting, and where fault-injection
# tests stop a batch.
StepHook = Callable[[str], None]

# how far before the newest complete batch the clean-up looks for unreferenced extracts
CLEANUP_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class IngestResult:
    batch_id: str
    manifest_key: str
    manifest: IngestionManifest
    skipped_reason: str | None = None

    @property
    def rows(self) -> int:
        return sum(int(t["rows"]) for t in self.manifest["tables"].values())


def _state_document(store: ObjectStore) -> IngestState:
    try:
        document = store.get_json(layout.STATE_KEY)
        if document is not None and not isinstance(document, dict):
            raise TypeError("not an object")
        state = IngestState.from_json(document)
        if state.batch_id is not None:
            layout.batch_ts_of(state.batch_id)  # a batch id, or ValueError / TypeError
    except (AttributeError, TypeError, ValueError, KeyError):  # JSON of another shape
        raise store.damaged(layout.STATE_KEY, "not a watermark state document") from None
    return state


def load_state(store: ObjectStore) -> IngestState:
    """The bookmarks after the newest complete batch (recovering from its manifest if the
    state object was not written)."""
    state = _state_document(store)
    start_after = layout.manifest_key(state.batch_id) if state.batch_id else ""
    newer = list(store.keys(layout.MANIFEST_PREFIX, start_after=start_after))
    if newer:
        manifest = ingestion_manifest.read_key(store, newer[-1])
        recovered = IngestState.from_json(manifest["state_after"] if manifest else None)
        log_event(logger, "state_recovered_from_manifest", batch_id=recovered.batch_id)
        return recovered
    return state


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
            batch_id = _extract_batch_id(table, key)
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


def _extract_batch_id(table: str, key: str) -> str | None:
    """The batch id of an extract key, None for anything else."""
    return layout.batch_id_of_data_key(table, key, "csv")


def _check_window_batch(
    settings: Settings, state: IngestState, batch_id: str, full_refresh: bool
) -> None:
    """A window batch follows every batch (transform and load take batches in id order, and
    the state it writes names it) and re-reads only tables the warehouse already has."""
    if full_refresh:
        raise ConfigError("a window batch re-reads an interval; it cannot also be a full refresh")
    if state.batch_id is not None and batch_id <= state.batch_id:
        raise ConfigError(
            f"a window batch needs a batch id after the newest batch {state.batch_id},"
            f" not {batch_id}"
        )
    never = [t for t in settings.tables if t not in state.bookmarks]
    if never:
        raise ConfigError(
            f"a window batch re-reads tables already extracted; never extracted: {', '.join(never)}"
        )


def ingest(
    settings: Settings,
    s3_client: Any,
    batch_ts: datetime | None = None,
    full_refresh: bool = False,
    on_step: StepHook | None = None,
    window: Window | None = None,
) -> IngestResult:
    """Run one batch identified by `batch_ts` (now, by default), holding the ingest lease.
    Replaying a batch id that already completed changes nothing and returns its manifest.

    With a `window`, the batch holds every row whose last_updated is in it rather than the
    changes since the bookmarks, and leaves the bookmarks as they are (etl.ingest.window)."""
    settings.require("totesys_db_url", "ingestion_bucket", "warehouse_db_url")
    batch_id = layout.batch_id_for(batch_ts or datetime.now(UTC))
    with hold(settings, "ingest") as lease:
        return _ingest(settings, s3_client, batch_id, full_refresh, on_step, lease, window)


def _ingest(
    settings: Settings,
    s3_client: Any,
    batch_id: str,
    full_refresh: bool,
    on_step: StepHook | None,
    lease: Lease,
    window: Window | None = None,
) -> IngestResult:
    step = on_step or (lambda _: None)
    store = ObjectStore(s3_client, settings.ingestion_bucket, create_only=True)
    manifest_key = layout.manifest_key(batch_id)

    existing = ingestion_manifest.read_key(store, manifest_key)
    if existing is not None:
        log_event(logger, "batch_already_complete", batch_id=batch_id)
        return IngestResult(batch_id, manifest_key, existing, "already complete")
    state_etag = store.etag(layout.STATE_KEY)  # the state is replaced only from this version
    state = load_state(store)
    if window is not None:
        _check_window_batch(settings, state, batch_id, full_refresh)
    elif state.batch_id is not None and batch_id <= state.batch_id:
        reason = f"covered by the later batch {state.batch_id}"
        log_event(logger, "batch_skipped", batch_id=batch_id, reason=reason)
        # the covering batch holds this interval's changes: callers wait for its manifest
        covering = layout.manifest_key(state.batch_id)
        return IngestResult(batch_id, covering, ingestion_manifest.empty(batch_id), reason)

    remove_unfinished_batches(store, state.batch_id, lease)
    never_extracted = [t for t in ALL_TABLES if t not in state.bookmarks]
    if never_extracted and set(settings.tables) != set(ALL_TABLES):
        # facts would reference dimensions the warehouse has never received
        raise ConfigError(
            f"the first batch must extract all 11 tables; never extracted: {', '.join(never_extracted)}"
        )
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    extracts: dict[str, TableExtract] = {}
    bookmarks = dict(state.bookmarks)
    with connect(settings.totesys_db_url, "totesys") as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            clock = conn.execute("SELECT localtimestamp").fetchone()
            source_now = clock[0] if clock else None  # the snapshot's start, source clock
            for name in settings.tables:
                lease.check(f"extracting {name}")  # a paused writer stops here on resuming
                table = SOURCE_TABLES[name]
                extra = check_source_columns(conn, table)
                if extra:
                    log_event(
                        logger,
                        "source_columns_ignored",
                        logging.WARNING,
                        table=name,
                        columns=",".join(extra),
                    )
                before = Bookmark() if full_refresh else state.bookmark(name)
                extract = extract_table(
                    conn, table, before, settings.overlap, store,
                    layout.extract_key(name, batch_id, lease.generation),
                    None if window is None else (window.since, window.until),
                )  # fmt: skip
                extracts[name] = extract
                if window is None:  # a window batch never moves a bookmark
                    bookmarks[name] = before.advance(
                        extract.extracted_max, extract.versions_in_overlap, settings.overlap,
                        source_now,
                    )  # fmt: skip
                if extract.extracted_max and source_now and extract.extracted_max > source_now:
                    log_event(logger, "future_dated_rows", logging.WARNING, table=name,
                              newest=extract.extracted_max, source_now=source_now)  # fmt: skip
                log_event(
                    logger, "table_extracted", table=name, rows=extract.rows,
                    bytes=extract.written.bytes if extract.written else 0, seconds=extract.seconds,
                )  # fmt: skip
                step(f"table:{name}")
    step("data_written")

    state_after = IngestState(batch_id, bookmarks)
    manifest = ingestion_manifest.new(
        batch_id,
        started_at,
        datetime.now(UTC),
        time.perf_counter() - started,
        full_refresh,
        settings.overlap.total_seconds(),
        state.batch_id,
        {
            name: ingestion_manifest.table_entry(
                extract.rows,
                extract.written,
                list(SOURCE_TABLES[name].column_names),
                state.bookmark(name).value,
                bookmarks[name].value,
                extract.seconds,
            )
            for name, extract in extracts.items()
        },
        state_after.to_json(),
        None if window is None else window.to_json(),
    )
    lease.check("the manifest")
    ingestion_manifest.write(store, manifest)
    step("manifest_written")
    lease.check("the state")
    store.replace_json(layout.STATE_KEY, state_after.to_json(), state_etag)
    step("state_written")
    result = IngestResult(batch_id, manifest_key, manifest)
    log_event(
        logger, "batch_complete", batch_id=batch_id, rows=result.rows, seconds=manifest["seconds"]
    )
    return result
