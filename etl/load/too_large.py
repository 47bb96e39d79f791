"""Values this warehouse's own columns cannot hold, set aside at load.

Transform conforms every row to the contract (`spec/warehouse.sql`: varchar without a
length, numeric(10, 2) for two prices). A prepared warehouse may be narrower: a
`varchar(50)` name, a `numeric(8, 2)` amount. A value beyond such a column would fail the
batch's COPY on every retry, so load checks each record batch against the target's
limits before copying it: under `set_aside` the rows that do not fit are left out and
kept in `etl.load_set_aside` (table, key, last_updated, column, value, reason, batch,
whether it was emailed); under `fail` the first one fails the batch in one line.

A set-aside row stays open until a later batch loads a row with the same key (the source
corrected); a fact that refers to a set-aside dimension row waits for it
(etl.load.waiting). `etl status`, reconcile, freshness and the DAG's email read it here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from etl.load.target import Target
from etl.transform.rejects import REJECT_SCHEMA, RejectLog
from etl.transform.rejects_area import BatchRejects
from etl.warehouse import WAREHOUSE_TABLES, WarehouseTable

Connection = psycopg.Connection[tuple[Any, ...]]

TABLE = sql.Identifier("etl", "load_set_aside")
COLUMNS = tuple(REJECT_SCHEMA.names)


@dataclass(frozen=True)
class Limit:
    """One target column narrower than text or unbounded numeric."""

    column: str  # canonical name
    max_length: int | None  # varchar(n) / char(n)
    digits: int | None  # numeric(p, s): p - s digits before the point
    type_name: str  # as the reason shows it

    def too_large(self, values: pa.Array) -> pa.Array:
        if self.max_length is not None:
            return pc.fill_null(pc.greater(pc.utf8_length(values), self.max_length), False)
        assert self.digits is not None
        bound = pa.scalar(Decimal(10) ** self.digits, pa.decimal128(38, 0))
        magnitude = pc.cast(pc.abs(values), pa.decimal128(38, 2))
        return pc.fill_null(
            pc.greater_equal(magnitude, pc.cast(bound, pa.decimal128(38, 2))), False
        )


def read_limits(conn: Connection, target: Target) -> dict[str, list[Limit]]:
    """Per canonical table, the columns we write whose target type has a length or
    precision."""
    rows = conn.execute(
        "SELECT table_name, column_name, character_maximum_length, numeric_precision,"
        " numeric_scale, data_type FROM information_schema.columns WHERE table_schema = %s"
        " AND (character_maximum_length IS NOT NULL"
        "      OR (data_type = 'numeric' AND numeric_precision IS NOT NULL))",
        (target.schema,),
    ).fetchall()
    found = {(table, column): (length, precision, scale, kind)
             for table, column, length, precision, scale, kind in rows}  # fmt: skip
    limits: dict[str, list[Limit]] = {}
    for table in WAREHOUSE_TABLES.values():
        for field in table.schema:
            hit = found.get(
                (target.names.table(table.name), target.names.column(table.name, field.name))
            )
            if hit is None:
                continue
            length, precision, scale, kind = hit
            if length is not None and pa.types.is_string(field.type):
                limits.setdefault(table.name, []).append(
                    Limit(field.name, int(length), None, f"{kind}({length})")
                )
            elif precision is not None and pa.types.is_decimal(field.type):
                digits = int(precision) - int(scale or 0)
                if digits < field.type.precision - field.type.scale:
                    limits.setdefault(table.name, []).append(
                        Limit(field.name, None, digits, f"numeric({precision}, {scale})")
                    )
    return limits


def split(
    rows: pa.RecordBatch, table: WarehouseTable, limits: list[Limit], log: RejectLog
) -> pa.RecordBatch:
    """`rows` without those a limit refuses, which go to `log` (which raises under fail)."""
    if not limits or rows.num_rows == 0:
        return rows
    columns = {name: rows.column(name) for name in rows.schema.names}
    if table.kind == "fact":
        columns["last_updated"] = _timestamps(rows)
    failed = pa.repeat(False, rows.num_rows)
    for limit in limits:
        mask = pc.and_(limit.too_large(rows.column(limit.column)), pc.invert(failed))
        reason = f"does not fit the warehouse column's {limit.type_name}"
        log.add(table.name, table.key[0], columns, limit.column, mask, reason)
        failed = pc.or_(failed, mask)
    return rows.filter(pc.invert(failed)) if failed.true_count else rows


def _timestamps(rows: pa.RecordBatch) -> pa.Array:
    """A fact row's source version (last_updated_date + last_updated_time)."""
    day = pc.cast(rows.column("last_updated_date"), pa.timestamp("ms"))
    time = rows.column("last_updated_time")
    if pa.types.is_time32(time.type):  # milliseconds (the contract's time(3))
        millis = pc.cast(pc.cast(time, pa.int32()), pa.int64())
    else:  # microseconds
        millis = pc.divide(pc.cast(time, pa.int64()), 1000)
    return pc.add(day, pc.cast(millis, pa.duration("ms")))


def ensure(conn: Connection) -> None:
    with conn.transaction():
        conn.execute(
            sql.SQL(
                'CREATE TABLE IF NOT EXISTS {} ("table" text NOT NULL, key_column text NOT NULL,'
                ' key text NOT NULL, last_updated timestamp, "column" text NOT NULL, value text,'
                " reason text NOT NULL, batch_id text NOT NULL,"
                " reported boolean NOT NULL DEFAULT false)"
            ).format(TABLE)
        )


def record(conn: Connection, found: pa.Table) -> int:
    """Keep what this batch set aside. A row already open with the same key, column, value
    and version stays as it is (a sweep, a full refresh or a backfill re-reads it: not new,
    not emailed again); an open row of the same key with something else is replaced.
    Returns how many rows are new."""
    if found.num_rows == 0:
        return 0
    identity = ("table", "key", "column", "value", "last_updated")
    rows = found.to_pylist()
    existing = conn.execute(
        sql.SQL('SELECT "table", key, "column", value, last_updated FROM {} WHERE ("table", key)'
                " IN (SELECT * FROM unnest(%s::text[], %s::text[]))").format(TABLE),
        ([r["table"] for r in rows], [r["key"] for r in rows]),
    ).fetchall()  # fmt: skip
    known = {tuple(row) for row in existing}
    new = [r for r in rows if tuple(r[c] for c in identity) not in known]
    if not new:
        return 0
    conn.execute(
        sql.SQL('DELETE FROM {} WHERE ("table", key) IN'
                " (SELECT * FROM unnest(%s::text[], %s::text[]))").format(TABLE),
        ([r["table"] for r in new], [r["key"] for r in new]),
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                TABLE,
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
                sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
            ),
            [tuple(row[c] for c in COLUMNS) for row in new],
        )
    return len(new)


def close_loaded(
    conn: Connection, target: Target, table: WarehouseTable, staging: sql.Identifier
) -> None:
    """A row of a key this batch loaded closes the open set-aside row of that key."""
    conn.execute(
        sql.SQL("DELETE FROM {} s WHERE s.\"table\" = %s AND EXISTS"
                " (SELECT 1 FROM {} st WHERE st.{}::text = s.key)").format(
            TABLE, staging, target.column(table.name, table.key[0])
        ),
        (table.name,),
    )  # fmt: skip


def any_open(conn: Connection) -> bool:
    """Whether any set-aside row is open (one cheap probe per batch)."""
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(TABLE)).fetchone()
    return bool(row and row[0])


def _exists(conn: Connection) -> bool:
    row = conn.execute("SELECT to_regclass('etl.load_set_aside') IS NOT NULL").fetchone()
    return bool(row and row[0])


def open_rows(conn: Connection, unreported_only: bool = False) -> pa.Table:
    """The open set-aside rows (REJECT_SCHEMA), oldest batch first."""
    if not _exists(conn):
        return REJECT_SCHEMA.empty_table()
    where = sql.SQL(" WHERE NOT reported") if unreported_only else sql.SQL("")
    rows = conn.execute(
        sql.SQL('SELECT {} FROM {}{} ORDER BY batch_id, "table", key').format(
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), TABLE, where
        )
    ).fetchall()
    return pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in rows], REJECT_SCHEMA)


def report_unreported(conn: Connection, send: Callable[[BatchRejects], bool]) -> list[str]:
    """Hand each batch's unreported set-aside rows to `send`, oldest first, and mark them
    reported once it returns True (it stops at the first False: the next run tries again).
    Returns the batch ids sent."""
    rows = open_rows(conn, unreported_only=True)
    conn.commit()
    sent: list[str] = []
    for batch_id in sorted(set(rows.column("batch_id").to_pylist())):
        batch = BatchRejects(batch_id, rows.filter(pc.equal(rows.column("batch_id"), batch_id)))
        if not send(batch):
            break
        conn.execute(
            sql.SQL("UPDATE {} SET reported = true WHERE batch_id = %s").format(TABLE), (batch_id,)
        )
        conn.commit()
        sent.append(batch_id)
    return sent


def fact_versions(conn: Connection) -> dict[str, list[tuple[int, datetime]]]:
    """(source id, last_updated) of each open set-aside fact version, per fact."""
    found: dict[str, list[tuple[int, datetime]]] = {}
    for row in open_rows(conn).to_pylist():
        if WAREHOUSE_TABLES[row["table"]].kind == "fact" and row["last_updated"] is not None:
            found.setdefault(row["table"], []).append((int(row["key"]), row["last_updated"]))
    return found
