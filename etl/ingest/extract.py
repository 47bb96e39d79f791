"""Extract one table's changed rows from totesys as CSV, streamed into the object store.

Query building is pure (`changed_rows_filter`); the adapter runs it inside the caller's
REPEATABLE READ snapshot, so the count, the rows and the overlap versions all agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from etl.csv_format import COPY_OPTIONS, select_expression
from etl.errors import SchemaDriftError
from etl.ingest.watermark import Bookmark, Version
from etl.storage import ObjectStore, WrittenObject
from etl.tables import REPLICATION_KEY, SOURCE_SCHEMA, SourceTable, source_table

Connection = psycopg.Connection[tuple[Any, ...]]

POSTGRES_TYPES = {
    "int": {"integer"},
    "text": {"text", "character varying", "USER-DEFINED"},
    "numeric": {"numeric"},
    "bool": {"boolean"},
    "timestamp": {"timestamp without time zone"},
}


@dataclass(frozen=True)
class TableExtract:
    table: str
    rows: int
    written: WrittenObject | None
    extracted_max: datetime | None
    versions_in_overlap: tuple[Version, ...]
    seconds: float


def check_source_columns(conn: Connection, table: SourceTable) -> list[str]:
    """Fail on a missing or retyped contract column; return extra columns (not extracted)."""
    found: dict[str, str] = dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s",
            (SOURCE_SCHEMA, table.name),
        ).fetchall()
    )
    if not found:
        raise SchemaDriftError(f"totesys has no table {table.name}")
    for column in table.columns:
        if column.name not in found:
            raise SchemaDriftError(f"totesys.{table.name}: column {column.name} is missing")
        if found[column.name] not in POSTGRES_TYPES[column.kind]:
            found_type = found[column.name]
            raise SchemaDriftError(
                f"totesys.{table.name}.{column.name}: type {found_type}, expected {column.kind}"
            )
    return sorted(set(found) - set(table.column_names))


def changed_rows_filter(
    table: SourceTable, bookmark: Bookmark, overlap: timedelta
) -> tuple[sql.Composed, dict[str, Any]]:
    """WHERE clause selecting versions newer than the bookmark's window and not yet seen."""
    low = bookmark.lower_bound(overlap)
    key, pk = sql.Identifier(REPLICATION_KEY), sql.Identifier(table.primary_key)
    if low is None:
        return sql.SQL("WHERE true").format(), {}
    seen = sorted(bookmark.seen)
    clause = sql.SQL(
        "WHERE {key} >= %(low)s AND NOT EXISTS ("
        "SELECT 1 FROM unnest(%(seen_ids)s::int[], %(seen_ts)s::timestamp[]) AS s(id, ts)"
        " WHERE s.id = {pk} AND s.ts = {key})"
    ).format(key=key, pk=pk)
    return clause, {"low": low, "seen_ids": [v[0] for v in seen], "seen_ts": [v[1] for v in seen]}


def window_rows_filter(since: datetime, until: datetime) -> tuple[sql.Composed, dict[str, Any]]:
    """WHERE clause selecting every row whose last_updated is in `[since, until)` (a window
    batch: a backfill or the nightly sweep; see etl.ingest.window). Bookmarks play no part."""
    clause = sql.SQL("WHERE {key} >= %(since)s AND {key} < %(until)s").format(
        key=sql.Identifier(REPLICATION_KEY)
    )
    return clause, {"since": since, "until": until}


def extract_table(
    conn: Connection,
    table: SourceTable,
    bookmark: Bookmark,
    overlap: timedelta,
    store: ObjectStore,
    key: str,
    window: tuple[datetime, datetime] | None = None,
) -> TableExtract:
    """Stream the changed rows of `table` to `key` (or, given a `window`, every row whose
    last_updated is in it); nothing is written when none changed."""
    started = time.perf_counter()
    if window is None:
        where, params = changed_rows_filter(table, bookmark, overlap)
    else:
        where, params = window_rows_filter(*window)
    name, lu = source_table(table.name), sql.Identifier(REPLICATION_KEY)
    stats = conn.execute(
        sql.SQL("SELECT count(*), max({lu}) FROM {t} {where}").format(lu=lu, t=name, where=where),
        params,
    ).fetchone()
    assert stats is not None
    count, extracted_max = int(stats[0]), stats[1]
    if count == 0:
        return TableExtract(table.name, 0, None, None, (), time.perf_counter() - started)

    columns = sql.SQL(", ").join(select_expression(column) for column in table.columns)
    query = sql.SQL(
        "COPY (SELECT {cols} FROM {t} {where} ORDER BY {pk}, {lu}) TO STDOUT {opts}"
    ).format(
        cols=columns,
        t=name,
        where=where,
        pk=sql.Identifier(table.primary_key),
        lu=lu,
        opts=COPY_OPTIONS,
    )
    with conn.cursor() as cur, store.writer(key, "text/csv") as writer:
        with cur.copy(query, params) as copy:
            for block in copy:
                writer.write(block)
        copied = cur.rowcount
    if copied != count:
        raise RuntimeError(f"{table.name}: snapshot counted {count} rows but COPY wrote {copied}")

    window = extracted_max - overlap
    versions = conn.execute(
        sql.SQL("SELECT {pk}, {lu} FROM {t} {where} AND {lu} >= %(window)s").format(
            pk=sql.Identifier(table.primary_key), lu=lu, t=name, where=where
        ),
        {**params, "window": window},
    ).fetchall()
    return TableExtract(
        table.name,
        count,
        writer.result,
        extracted_max,
        tuple((int(k), ts) for k, ts in versions),
        time.perf_counter() - started,
    )
