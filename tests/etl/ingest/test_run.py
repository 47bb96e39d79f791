"""Ingestion against real PostgreSQL and moto S3: nothing lost, nothing half-visible."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl import layout
from etl.config import Secret, Settings
from etl.csv_format import read_extract
from etl.errors import ConfigError, SchemaDriftError, SourceUnavailableError
from etl.ingest.run import IngestResult, ingest, load_state
from etl.storage import ObjectStore
from etl.tables import ALL_TABLES, SOURCE_TABLES
from simulator.simulate import SimulationPlan, simulate
from tests.faults import InjectedCrash, crash_at

Row = tuple[Any, ...]


def source_rows(url: str, table: str) -> set[Row]:
    spec = SOURCE_TABLES[table]
    columns = sql.SQL(", ").join(map(sql.Identifier, spec.column_names))
    with psycopg.connect(url) as conn:
        return set(
            conn.execute(
                sql.SQL("SELECT {} FROM {}").format(columns, sql.Identifier(table))
            ).fetchall()
        )


def extracted_rows(store: ObjectStore, result: IngestResult, table: str) -> list[Row]:
    entry = result.manifest["tables"][table]
    if entry["file"] is None:
        return []
    data = store.get_bytes(entry["file"])
    assert data is not None
    parsed = read_extract(data, SOURCE_TABLES[table], entry["file"])
    return [tuple(row.values()) for row in parsed.to_pylist()]


def versions(rows: Any, table: str) -> set[tuple[int, datetime]]:
    names = SOURCE_TABLES[table].column_names
    pk, lu = names.index(SOURCE_TABLES[table].primary_key), names.index("last_updated")
    return {(row[pk], row[lu]) for row in rows}


def data_keys(store: ObjectStore) -> list[str]:
    return [k for k in store.keys("") if not k.startswith(("_manifests/", "_state/"))]


def source(settings: Settings) -> str:
    return settings.totesys_db_url.reveal()  # type: ignore[union-attr]


def store_of(settings: Settings, s3: Any) -> ObjectStore:
    return ObjectStore(s3, settings.ingestion_bucket)


def test_first_run_extracts_every_table_row_for_row(settings: Settings, s3: Any) -> None:
    result = ingest(settings, s3)
    store = store_of(settings, s3)
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    for table in ALL_TABLES:
        rows = extracted_rows(store, result, table)
        assert len(rows) == len(set(rows)) == result.manifest["tables"][table]["rows"]
        assert set(rows) == source_rows(url, table), table


def test_incremental_run_picks_up_exactly_the_new_and_updated_versions(
    settings: Settings, s3: Any
) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    ingest(settings, s3)
    before = {table: versions(source_rows(url, table), table) for table in ALL_TABLES}
    report = simulate(url, SimulationPlan(days=3, edits_per_weekday=4, seed=3))
    assert report.events["payments_paid"] > 0

    result = ingest(settings, s3)

    store = store_of(settings, s3)
    changed = 0
    for table in ALL_TABLES:
        expected = versions(source_rows(url, table), table) - before[table]
        assert versions(extracted_rows(store, result, table), table) == expected, table
        changed += len(expected)
    assert changed == result.rows > 0


def test_row_committed_late_inside_the_overlap_is_picked_up(settings: Settings, s3: Any) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    first = ingest(settings, s3)
    watermark = datetime.fromisoformat(str(first.manifest["tables"]["design"]["watermark_after"]))
    late = watermark - settings.overlap / 2  # behind the watermark, inside the overlap
    with psycopg.connect(url) as conn:
        design_id = conn.execute(
            "INSERT INTO design (created_at, design_name, file_location, file_name, last_updated)"
            " VALUES (%s, 'Steel', '/usr/share', 'steel-late.json', %s) RETURNING design_id",
            (late, late),
        ).fetchone()[0]  # type: ignore[index]

    second = ingest(settings, s3)

    rows = extracted_rows(store_of(settings, s3), second, "design")
    assert [(row[0], row[5]) for row in rows] == [(design_id, late)]
    assert second.rows == 1, "re-reading the overlap window duplicated nothing"


def test_rerun_without_source_change_writes_no_data(settings: Settings, s3: Any) -> None:
    ingest(settings, s3)
    store = store_of(settings, s3)
    files_before = data_keys(store)

    result = ingest(settings, s3)

    assert data_keys(store) == files_before
    assert result.rows == 0
    assert set(result.manifest["tables"]) == set(ALL_TABLES)
    assert all(entry["file"] is None for entry in result.manifest["tables"].values())


def test_crash_after_data_files_before_manifest_loses_nothing(settings: Settings, s3: Any) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    ingest(settings, s3)
    state_before = load_state(store_of(settings, s3))
    simulate(url, SimulationPlan(days=2, edits_per_weekday=2, seed=9))
    crashed_batch = datetime.now(UTC)

    with pytest.raises(InjectedCrash):
        ingest(settings, s3, batch_ts=crashed_batch, on_step=crash_at("data_written"))

    store = store_of(settings, s3)
    assert store.get_bytes(layout.manifest_key(layout.batch_id_for(crashed_batch))) is None
    assert load_state(store) == state_before, "watermarks did not move"
    retry = ingest(settings, s3)
    for table in ALL_TABLES:
        all_versions = versions(source_rows(url, table), table)
        extracted = versions(extracted_rows(store, retry, table), table)
        previous = {
            v for v in all_versions if v[1] <= (state_before.bookmark(table).value or datetime.min)
        }
        assert extracted == all_versions - previous, table


def test_crash_after_manifest_before_state_recovers_without_duplicates(
    settings: Settings, s3: Any
) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    with pytest.raises(InjectedCrash):
        ingest(settings, s3, on_step=crash_at("manifest_written"))
    store = store_of(settings, s3)
    assert store.get_bytes(layout.STATE_KEY) is None

    after = ingest(settings, s3)

    assert after.rows == 0, "the manifest's bookmarks were recovered"
    simulate(url, SimulationPlan(days=1, seed=2))
    assert ingest(settings, s3).rows > 0


def test_replaying_a_batch_changes_nothing(settings: Settings, s3: Any) -> None:
    batch_ts = datetime.now(UTC)
    first = ingest(settings, s3, batch_ts=batch_ts)
    store = store_of(settings, s3)
    files = data_keys(store)

    replay = ingest(settings, s3, batch_ts=batch_ts)
    older = ingest(settings, s3, batch_ts=batch_ts - timedelta(hours=1))

    assert replay.manifest == first.manifest
    assert replay.skipped_reason == "already complete"
    assert older.skipped_reason is not None and "covered by the later batch" in older.skipped_reason
    assert older.manifest_key == first.manifest_key
    assert data_keys(store) == files


def test_layout_and_manifest_match_the_documentation(settings: Settings, s3: Any) -> None:
    result = ingest(settings, s3)
    store = store_of(settings, s3)
    batch = result.batch_id
    assert re.fullmatch(r"\d{8}T\d{12}Z", batch)
    assert result.manifest_key == f"_manifests/{batch}.json"
    ts = layout.batch_ts_of(batch)
    for table, entry in result.manifest["tables"].items():
        key = entry["file"]
        assert key is not None
        assert re.fullmatch(
            rf"{table}/year={ts:%Y}/month={ts:%m}/day={ts:%d}/{table}-{batch}-a\d+\.csv", key
        )
        body = store.get_bytes(key)
        assert body is not None
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert len(body) == entry["bytes"]
        assert entry["columns"] == list(SOURCE_TABLES[table].column_names)
        assert entry["watermark_before"] is None
        assert entry["watermark_after"] is not None
    for field in (
        "batch_id",
        "batch_ts",
        "started_at",
        "finished_at",
        "seconds",
        "overlap_seconds",
        "state_after",
    ):
        assert field in result.manifest
    assert store.get_json(layout.STATE_KEY) == result.manifest["state_after"]


def test_subset_full_refresh_re_extracts_only_those_tables(settings: Settings, s3: Any) -> None:
    ingest(settings, s3)
    subset = replace(settings, tables=("currency", "department"))

    result = ingest(subset, s3, full_refresh=True)

    assert {t: e["rows"] for t, e in result.manifest["tables"].items()} == {
        "currency": 3,
        "department": 8,
    }
    state = load_state(store_of(settings, s3))
    assert set(state.bookmarks) == set(ALL_TABLES), "other tables keep their watermarks"


def test_database_down_is_a_clear_error_and_writes_nothing(settings: Settings, s3: Any) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    closed_port = re.sub(r":\d+/", ":1/", url)

    with pytest.raises(
        SourceUnavailableError, match=r"cannot connect to totesys at 127\.0\.0\.1:1/"
    ) as raised:
        ingest(replace(settings, totesys_db_url=Secret(closed_port)), s3)

    assert raised.value.transient, "an outage: retried"
    assert list(store_of(settings, s3).keys("")) == []


def test_wrong_password_is_a_clear_error_that_never_shows_the_password(
    settings: Settings, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    password = re.search(r"postgres:([^@]+)@", url).group(1)  # type: ignore[union-attr]
    wrong = url.replace(password, "hunter2-wrong")

    with pytest.raises(SourceUnavailableError, match="password authentication failed") as raised:
        ingest(replace(settings, totesys_db_url=Secret(wrong)), s3)

    assert "hunter2-wrong" not in str(raised.value) and password not in str(raised.value)
    assert not raised.value.transient, "wrong credentials are configuration: not retried"
    assert "hunter2-wrong" not in caplog.text and password not in caplog.text
    assert "hunter2" not in repr(replace(settings, totesys_db_url=Secret(wrong)))
    assert list(store_of(settings, s3).keys("")) == []


def test_missing_source_column_fails_naming_table_and_column(settings: Settings, s3: Any) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE staff DROP COLUMN email_address")

    with pytest.raises(SchemaDriftError, match=r"totesys\.staff: column email_address is missing"):
        ingest(settings, s3)

    store = store_of(settings, s3)
    assert list(store.keys(layout.MANIFEST_PREFIX)) == []
    assert store.get_bytes(layout.STATE_KEY) is None


def test_new_source_column_is_ignored_with_a_warning(
    settings: Settings, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE currency ADD COLUMN currency_symbol text DEFAULT '£'")
    caplog.set_level(logging.WARNING)

    result = ingest(settings, s3)

    assert result.manifest["tables"]["currency"]["rows"] == 3
    assert "source_columns_ignored table=currency columns=currency_symbol" in caplog.text


def test_a_future_dated_row_does_not_hide_later_changes(settings: Settings, s3: Any) -> None:
    url = source(settings)
    ingest(settings, s3)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE payment SET last_updated = '2099-01-01' WHERE payment_id = 1")
    ingest(settings, s3)
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE payment SET paid = NOT paid, last_updated = localtimestamp WHERE payment_id = 2"
        )

    later = ingest(settings, s3)

    rows = extracted_rows(ObjectStore(s3, settings.ingestion_bucket), later, "payment")
    assert [row[0] for row in rows] == [2], "the real change is extracted, the future row not again"


def test_the_first_batch_must_cover_every_table(settings: Settings, s3: Any) -> None:
    with pytest.raises(ConfigError, match="the first batch must extract all 11 tables"):
        ingest(replace(settings, tables=("sales_order",)), s3)


def referenced_files(store: ObjectStore) -> set[str]:
    return {
        entry["file"]
        for key in store.keys(layout.MANIFEST_PREFIX)
        for entry in (store.get_json(key) or {})["tables"].values()
        if entry["file"]
    }


def test_files_of_a_batch_that_died_before_its_manifest_are_removed_by_the_next_run(
    settings: Settings, s3: Any
) -> None:
    # Found by the soak: a process killed mid-batch cannot tidy up after itself, and readers
    # of the partitions (Athena, Glue) do not go through the manifests: they would count the
    # dead attempt's rows and the retry's twice. (ingest has no cleanup path of its own, so
    # an exception here leaves exactly what a SIGKILL leaves.)
    first = ingest(settings, s3)
    simulate(source(settings), SimulationPlan(days=2, edits_per_weekday=3, seed=11))
    with pytest.raises(InjectedCrash):
        ingest(settings, s3, on_step=crash_at("table:payment"))
    store = store_of(settings, s3)
    assert set(data_keys(store)) - referenced_files(store), "the dead attempt left files"

    retry = ingest(settings, s3)

    assert set(data_keys(store)) == referenced_files(store)
    kept = {e["file"] for r in (first, retry) for e in r.manifest["tables"].values() if e["file"]}
    assert kept <= set(data_keys(store)), "complete batches keep every file"
    assert retry.rows > 0


def test_an_older_unreferenced_extract_is_removed_and_referenced_ones_never_are(
    settings: Settings, s3: Any
) -> None:
    # what a writer that lost its lease may leave: the file it was finishing when it was
    # paused, of a batch older than its successor's, that no manifest will ever reference
    first = ingest(settings, s3)
    simulate(source(settings), SimulationPlan(days=1, edits_per_weekday=3, seed=12))
    second = ingest(settings, s3)
    store = store_of(settings, s3)
    first_ts, second_ts = (layout.batch_ts_of(b.batch_id) for b in (first, second))
    between = layout.batch_id_for(first_ts + (second_ts - first_ts) / 2)
    orphan = layout.extract_key("payment", between)
    store.put_bytes(orphan, b"payment_id\n")
    assert between > first.batch_id

    third = ingest(settings, s3)

    assert orphan not in set(data_keys(store))
    assert set(data_keys(store)) == referenced_files(store)
    for result in (first, second, third):
        for entry in result.manifest["tables"].values():
            if entry["file"]:
                assert store.get_bytes(entry["file"]) is not None, entry["file"]
