"""Fact versions waiting for a dimension row the warehouse does not have yet.

When transform sets aside a new dimension row (a currency code that is not ISO 4217, a
staff member whose department has no location), the facts that refer to it cannot be
inserted without breaking a foreign key, and must not be dropped either. Under the
`set_aside` policy they wait in `etl.waiting_<fact>`, a copy of the fact's columns plus the
batch they first came in, and every later batch's load tries them again after its
dimensions: once the corrected dimension row arrives they load with it. Moving rows in
and out happens inside the batch's transaction, so each version still loads exactly once.

The common case costs nothing extra: the insert is tried first under a savepoint, and only
a foreign-key violation makes the loader look for the rows that have no dimension.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from etl.load.target import Target
from etl.warehouse import FACTS, FOREIGN_KEYS, WarehouseTable

Connection = psycopg.Connection[tuple[Any, ...]]

SCHEMA = "etl"
SINCE = "waiting_since"  # the batch a waiting version came in


def table_of(fact: WarehouseTable) -> sql.Identifier:
    return sql.Identifier(SCHEMA, f"waiting_{fact.name}")


def ensure(conn: Connection, target: Target) -> None:
    """The three waiting tables, shaped like this warehouse's facts (names included), each
    holding a version at most once (a unique index on the version key)."""
    with conn.transaction():
        for fact in FACTS:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} AS SELECT {}, NULL::text AS {} FROM {} WITH NO DATA"
                ).format(
                    table_of(fact),
                    target.columns(fact),
                    sql.Identifier(SINCE),
                    target.table(fact.name),
                )
            )
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(f"waiting_{fact.name}_version_key"),
                    table_of(fact),
                    target.columns(fact, fact.key),
                )
            )


def present(conn: Connection) -> set[str]:
    """The facts that have a waiting table (none before the first load under set_aside)."""
    return {fact.name for fact in _present(conn)}


def add_since_column(conn: Connection, staging: sql.Identifier) -> None:
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN {} text").format(staging, sql.Identifier(SINCE))
    )


def restage(conn: Connection, target: Target, fact: WarehouseTable, staging: sql.Identifier) -> int:
    """Move every waiting version of `fact` into this batch's staging table, once: when
    the batch itself stages the same version again (a replay, a re-applied batch), the
    waiting row (which knows it was waiting) replaces the batch's copy."""
    columns = sql.SQL("{}, {}").format(target.columns(fact), sql.Identifier(SINCE))
    same = sql.SQL(" AND ").join(
        sql.SQL("s.{0} = w.{0}").format(target.column(fact.name, c)) for c in fact.key
    )
    cursor = conn.execute(
        sql.SQL(
            "WITH waiting AS (DELETE FROM {waiting} RETURNING *),"
            " doubled AS (DELETE FROM {staging} AS s USING waiting AS w WHERE {same})"
            " INSERT INTO {staging} ({columns}) SELECT {columns} FROM waiting"
        ).format(waiting=table_of(fact), staging=staging, columns=columns, same=same)
    )
    return cursor.rowcount


def _missing_dimension(target: Target, fact: WarehouseTable) -> sql.Composed:
    """True for a staged row that refers to a dimension row the warehouse lacks."""
    checks = [
        sql.SQL("(s.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {dim} d WHERE d.{key} = s.{col}))").format(
            col=target.column(fact.name, column), dim=target.table(dim), key=target.column(dim, key)
        )
        for table, column, dim, key in FOREIGN_KEYS
        if table == fact.name
    ]  # fmt: skip
    return sql.SQL(" OR ").join(checks)


def set_aside(
    conn: Connection,
    target: Target,
    fact: WarehouseTable,
    staging: sql.Identifier,
    batch_id: str,
    only_waiting: bool = False,
) -> int:
    """Move the staged versions whose dimension rows are missing to the waiting table
    (`only_waiting`: only those that were waiting already, under the fail policy)."""
    columns = target.columns(fact)
    missing = _missing_dimension(target, fact)
    if only_waiting:
        missing = sql.SQL("s.{} IS NOT NULL AND ({})").format(sql.Identifier(SINCE), missing)
    cursor = conn.execute(
        sql.SQL(
            "WITH orphans AS (DELETE FROM {staging} AS s WHERE {missing} RETURNING s.*)"
            " INSERT INTO {waiting} ({columns}, {since})"
            " SELECT {columns}, coalesce({since}, %s) FROM orphans ON CONFLICT DO NOTHING"
        ).format(
            staging=staging,
            missing=missing,
            waiting=table_of(fact),
            columns=columns,
            since=sql.Identifier(SINCE),
        ),
        (batch_id,),
    )
    return cursor.rowcount


def _present(conn: Connection) -> list[WarehouseTable]:
    """The facts whose waiting table exists (none before the first load)."""
    names = [f"{SCHEMA}.waiting_{fact.name}" for fact in FACTS]
    row = conn.execute(
        "SELECT array_agg(to_regclass(n) IS NOT NULL) FROM unnest(%s::text[]) n", (names,)
    ).fetchone()
    present = row[0] if row and row[0] else [False] * len(FACTS)
    return [fact for fact, there in zip(FACTS, present, strict=True) if there]


def counts(conn: Connection) -> dict[str, int]:
    """Waiting versions per fact (facts with none left out)."""
    found: dict[str, int] = {}
    for fact in _present(conn):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_of(fact))).fetchone()
        if row and row[0]:
            found[fact.name] = int(row[0])
    return found


def versions(conn: Connection) -> dict[str, list[tuple[int, datetime]]]:
    """(source id, last_updated) of every waiting version, per fact. A waiting table's
    columns are the fact's in canonical order (whatever this warehouse calls them)."""
    found: dict[str, list[tuple[int, datetime]]] = {}
    for fact in _present(conn):
        position = {name: i for i, name in enumerate(fact.columns)}
        key, day, time = (
            position[c] for c in (fact.key[0], "last_updated_date", "last_updated_time")
        )
        rows = conn.execute(sql.SQL("SELECT * FROM {}").format(table_of(fact))).fetchall()
        found[fact.name] = [(int(r[key]), datetime.combine(r[day], r[time])) for r in rows]
    return found
