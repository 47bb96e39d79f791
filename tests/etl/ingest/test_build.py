"""The pure half of an ingestion batch, with plain values: which batches run, where the
bookmarks go, what the manifest and the state say. No database, no bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from etl import layout
from etl.errors import ConfigError
from etl.ingest.build import (
    Extraction,
    bookmark_before,
    bookmarks_after,
    build,
    check_first_batch,
    extract_keys,
    future_dated,
    skip_reason,
)
from etl.ingest.extract import TableExtract
from etl.ingest.watermark import Bookmark, IngestState
from etl.ingest.window import Window
from etl.storage import WrittenObject
from etl.tables import ALL_TABLES, SOURCE_TABLES

OVERLAP = timedelta(minutes=15)
T0 = datetime(2026, 11, 14, 7, 55, 11, 123000)  # the source's naive clock
EARLIER, BATCH, LATER = "20261114T080000000000Z", "20261114T090000000000Z", "20261114T100000000000Z"


def every_table_at(value: datetime | None, batch_id: str | None = EARLIER) -> IngestState:
    return IngestState(batch_id, {name: Bookmark(value) for name in ALL_TABLES})


def extracted(
    table: str, rows: int, newest: datetime | None, batch_id: str = BATCH
) -> TableExtract:
    written = (
        WrittenObject(layout.extract_key(table, batch_id, 3), 100 * rows, "ab" * 32)
        if rows
        else None
    )
    versions = ((1, newest),) if newest else ()
    return TableExtract(table, rows, written, newest, versions, 0.25)


def extraction(tables: dict[str, TableExtract], source_now: datetime | None) -> Extraction:
    start = datetime(2026, 11, 14, 9, 0, 1, tzinfo=UTC)
    return Extraction(start, start + timedelta(seconds=2), 2.0, source_now, tables)


def test_a_batch_id_at_or_before_the_newest_batch_is_skipped_as_covered() -> None:
    state = every_table_at(T0, LATER)

    assert (
        skip_reason(ALL_TABLES, state, BATCH, False, None) == f"covered by the later batch {LATER}"
    )
    assert skip_reason(ALL_TABLES, state, LATER, False, None) is not None
    assert skip_reason(ALL_TABLES, every_table_at(T0, EARLIER), BATCH, False, None) is None
    assert skip_reason(ALL_TABLES, IngestState(), BATCH, False, None) is None


def test_a_window_batch_is_refused_rather_than_skipped() -> None:
    window = Window(T0 - timedelta(days=1), T0)

    with pytest.raises(ConfigError, match="cannot also be a full refresh"):
        skip_reason(ALL_TABLES, every_table_at(T0), BATCH, True, window)
    with pytest.raises(ConfigError, match=f"after the newest batch {LATER}, not {BATCH}"):
        skip_reason(ALL_TABLES, every_table_at(T0, LATER), BATCH, False, window)
    partial = IngestState(EARLIER, {"staff": Bookmark(T0)})
    with pytest.raises(ConfigError, match="never extracted: currency"):
        skip_reason(["staff", "currency"], partial, BATCH, False, window)
    assert skip_reason(["staff"], partial, BATCH, False, window) is None


def test_the_first_batch_must_extract_every_table() -> None:
    with pytest.raises(ConfigError, match="the first batch must extract all 11 tables"):
        check_first_batch(["staff", "department"], IngestState())
    check_first_batch(ALL_TABLES, IngestState())
    check_first_batch(["staff"], every_table_at(T0))


def test_extract_keys_carry_the_batch_and_the_writer_generation() -> None:
    keys = extract_keys(["staff", "payment"], BATCH, 7)

    assert keys == {
        "staff": layout.extract_key("staff", BATCH, 7),
        "payment": layout.extract_key("payment", BATCH, 7),
    }
    assert layout.batch_id_of_data_key("staff", keys["staff"], "csv") == BATCH
    assert keys["staff"] != layout.extract_key("staff", BATCH, 8)


def test_a_full_refresh_starts_every_table_from_the_beginning() -> None:
    state = every_table_at(T0)

    assert bookmark_before(state, "staff", False) == Bookmark(T0)
    assert bookmark_before(state, "staff", True) == Bookmark()


def test_bookmarks_advance_to_the_newest_row_but_not_past_the_source_clock() -> None:
    state = every_table_at(T0)
    newer, future = T0 + timedelta(minutes=5), T0 + timedelta(days=365)
    source_now = T0 + timedelta(minutes=10)
    done = extraction(
        {
            "staff": extracted("staff", 2, newer),
            "payment": extracted("payment", 1, future),
            "currency": extracted("currency", 0, None),
        },
        source_now,
    )

    after = bookmarks_after(state, done, False, OVERLAP, None)

    assert after["staff"] == Bookmark(newer, frozenset({(1, newer)}))
    assert after["payment"].value == source_now, "clamped to the source's clock"
    assert after["currency"] == Bookmark(T0), "no rows: unchanged"
    assert after["design"] == Bookmark(T0), "not extracted: unchanged"
    assert future_dated(done.tables["payment"], source_now)
    assert not future_dated(done.tables["staff"], source_now)
    assert not future_dated(done.tables["staff"], None)


def test_a_window_batch_moves_no_bookmark() -> None:
    state = every_table_at(T0)
    done = extraction({"staff": extracted("staff", 3, T0 + timedelta(hours=1))}, None)

    assert bookmarks_after(state, done, False, OVERLAP, Window(T0, T0 + timedelta(hours=2))) == (
        state.bookmarks
    )


def test_the_manifest_and_state_say_what_was_extracted() -> None:
    state = every_table_at(T0)
    newer = T0 + timedelta(minutes=5)
    done = extraction(
        {"staff": extracted("staff", 2, newer), "currency": extracted("currency", 0, None)},
        T0 + timedelta(hours=1),
    )

    built = build(BATCH, state, done, False, OVERLAP)

    assert built.manifest_key == layout.manifest_key(BATCH)
    manifest = built.manifest
    assert manifest["batch_id"] == BATCH and manifest["previous_batch_id"] == EARLIER
    assert manifest["started_at"] == done.started_at.isoformat()
    assert manifest["finished_at"] == done.finished_at.isoformat()
    assert manifest["overlap_seconds"] == 900.0 and manifest["full_refresh"] is False
    assert list(manifest["tables"]) == ["staff", "currency"]
    staff = manifest["tables"]["staff"]
    assert staff["rows"] == 2 and staff["bytes"] == 200
    assert staff["file"] == layout.extract_key("staff", BATCH, 3)
    assert staff["columns"] == list(SOURCE_TABLES["staff"].column_names)
    assert staff["watermark_before"] == T0.isoformat()
    assert staff["watermark_after"] == newer.isoformat()
    currency = manifest["tables"]["currency"]
    assert (currency["file"], currency["sha256"], currency["bytes"]) == (None, None, 0)
    assert built.state_after.batch_id == BATCH
    assert built.state_after.bookmark("staff").value == newer
    assert manifest["state_after"] == built.state_after.to_json()
    assert manifest["window"] is None


def test_a_full_refresh_manifest_records_the_bookmark_it_ignored() -> None:
    state = every_table_at(T0)
    older = T0 - timedelta(days=30)
    done = extraction({"staff": extracted("staff", 5, older)}, T0 + timedelta(hours=1))

    built = build(BATCH, state, done, True, OVERLAP)

    entry = built.manifest["tables"]["staff"]
    assert entry["watermark_before"] == T0.isoformat()
    assert entry["watermark_after"] == older.isoformat(), "restarted from the beginning"
    assert built.manifest["full_refresh"] is True


def test_a_window_batch_manifest_names_its_window() -> None:
    window = Window(T0, T0 + timedelta(hours=2), "sweep")
    done = extraction({"staff": extracted("staff", 1, T0 + timedelta(hours=1))}, None)

    built = build(BATCH, every_table_at(T0), done, False, OVERLAP, window)

    assert built.manifest["window"] == window.to_json()
    assert built.manifest["tables"]["staff"]["watermark_after"] == T0.isoformat()
    assert built.state_after == IngestState(BATCH, every_table_at(T0).bookmarks)
