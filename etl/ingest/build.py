"""What one ingestion batch publishes, computed from what it extracted: no I/O.

Given the previous watermark state and the extracts (their files already streamed to the
bucket by etl.ingest.publish), this decides the object keys, the bookmarks after the
batch, the manifest document and the new state. Everything here is a plain function of
plain values, so the rules a newcomer changes (which batches run, how a bookmark moves,
what the manifest says) are tested without a database or a bucket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from etl import layout
from etl.errors import ConfigError
from etl.ingest.extract import TableExtract
from etl.ingest.watermark import Bookmark, IngestState
from etl.ingest.window import Window
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.tables import ALL_TABLES, SOURCE_TABLES


@dataclass(frozen=True)
class Extraction:
    """What one batch read from the source, in one REPEATABLE READ snapshot."""

    started_at: datetime
    finished_at: datetime
    seconds: float
    source_now: datetime | None  # the snapshot's start on the source's clock
    tables: dict[str, TableExtract]  # in the order extracted


@dataclass(frozen=True)
class BuiltIngest:
    """The documents a batch commits once its files are written: the manifest (at
    `manifest_key`), then the state."""

    batch_id: str
    manifest_key: str
    manifest: IngestionManifest
    state_after: IngestState


def skip_reason(
    tables: Iterable[str],
    state: IngestState,
    batch_id: str,
    full_refresh: bool,
    window: Window | None,
) -> str | None:
    """Why the batch id is skipped (a later batch already covers it), None when it runs.
    A window batch is never skipped: it is refused unless it can run (check_window_batch)."""
    if window is not None:
        check_window_batch(tables, state, batch_id, full_refresh)
        return None
    if state.batch_id is not None and batch_id <= state.batch_id:
        return f"covered by the later batch {state.batch_id}"
    return None


def check_window_batch(
    tables: Iterable[str], state: IngestState, batch_id: str, full_refresh: bool
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
    never = [t for t in tables if t not in state.bookmarks]
    if never:
        raise ConfigError(
            f"a window batch re-reads tables already extracted; never extracted: {', '.join(never)}"
        )


def check_first_batch(tables: Iterable[str], state: IngestState) -> None:
    """Until every table has been extracted once, a batch extracts all of them: facts
    would otherwise reference dimensions the warehouse has never received."""
    never_extracted = [t for t in ALL_TABLES if t not in state.bookmarks]
    if never_extracted and set(tables) != set(ALL_TABLES):
        raise ConfigError(
            f"the first batch must extract all 11 tables; never extracted: {', '.join(never_extracted)}"
        )


def bookmark_before(state: IngestState, table: str, full_refresh: bool) -> Bookmark:
    """Where a table's extract starts: its bookmark, or the beginning on a full refresh."""
    return Bookmark() if full_refresh else state.bookmark(table)


def extract_keys(tables: Iterable[str], batch_id: str, attempt: int | None) -> dict[str, str]:
    """The key of each table's CSV; `attempt` is the writer's lease generation."""
    return {name: layout.extract_key(name, batch_id, attempt) for name in tables}


def bookmarks_after(
    state: IngestState,
    extraction: Extraction,
    full_refresh: bool,
    overlap: timedelta,
    window: Window | None,
) -> dict[str, Bookmark]:
    """Every table's bookmark after the batch: advanced to the newest row extracted (never
    past the source's clock); a window batch moves none."""
    bookmarks = dict(state.bookmarks)
    if window is not None:
        return bookmarks
    for name, extract in extraction.tables.items():
        bookmarks[name] = bookmark_before(state, name, full_refresh).advance(
            extract.extracted_max, extract.versions_in_overlap, overlap, extraction.source_now
        )
    return bookmarks


def future_dated(extract: TableExtract, source_now: datetime | None) -> bool:
    """Whether the table's newest row is dated after the snapshot's start on the source's
    clock (its bookmark stops at the clock: worth a warning)."""
    newest = extract.extracted_max
    return newest is not None and source_now is not None and newest > source_now


def build(
    batch_id: str,
    state: IngestState,
    extraction: Extraction,
    full_refresh: bool,
    overlap: timedelta,
    window: Window | None = None,
) -> BuiltIngest:
    """The manifest and the state after the batch, from the state before it and what it
    extracted."""
    bookmarks = bookmarks_after(state, extraction, full_refresh, overlap, window)
    state_after = IngestState(batch_id, bookmarks)
    tables = {
        name: ingestion_manifest.table_entry(
            extract.rows,
            extract.written,
            list(SOURCE_TABLES[name].column_names),
            state.bookmark(name).value,
            bookmarks[name].value,
            extract.seconds,
        )
        for name, extract in extraction.tables.items()
    }
    manifest = ingestion_manifest.new(
        batch_id, extraction.started_at, extraction.finished_at, extraction.seconds,
        full_refresh, overlap.total_seconds(), state.batch_id, tables, state_after.to_json(),
        None if window is None else window.to_json(),
    )  # fmt: skip
    return BuiltIngest(batch_id, layout.manifest_key(batch_id), manifest, state_after)
