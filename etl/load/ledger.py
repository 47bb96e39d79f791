"""The load ledger: which processed batches the warehouse holds, written in the same
transaction as the batch's rows, so a batch is in the warehouse exactly when it is here."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from etl import bookkeeping

Connection = psycopg.Connection[tuple[Any, ...]]

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS etl.load_ledger (
    batch_id   text PRIMARY KEY,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    seconds    numeric NOT NULL,
    tables     jsonb NOT NULL   -- per table: rows staged, inserted, updated
);
"""


def ensure_ledger(conn: Connection) -> None:
    """The ledger in the loader's own bookkeeping schema (etl.bookkeeping refuses one that
    is not). One loader at a time is the load lease's job (etl.lease)."""
    with conn.transaction():
        bookkeeping.ensure_schema(conn)
        conn.execute(LEDGER_DDL.encode())


def last_loaded(conn: Connection) -> str | None:
    row = conn.execute("SELECT max(batch_id) FROM etl.load_ledger").fetchone()
    return None if row is None else row[0]


def is_loaded(conn: Connection, batch_id: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM etl.load_ledger WHERE batch_id = %s", (batch_id,)).fetchone()
        is not None
    )


def record(
    conn: Connection, batch_id: str, seconds: float, tables: dict[str, dict[str, int]]
) -> None:
    conn.execute(
        "INSERT INTO etl.load_ledger (batch_id, seconds, tables) VALUES (%s, %s, %s::jsonb)",
        (batch_id, round(seconds, 3), json.dumps(tables, sort_keys=True)),
    )


def loaded_batches(conn: Connection) -> list[str]:
    """Every batch the warehouse holds, oldest first."""
    rows = conn.execute("SELECT batch_id FROM etl.load_ledger ORDER BY batch_id").fetchall()
    return [str(row[0]) for row in rows]
