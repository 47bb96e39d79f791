"""Read the warehouse back for comparison with the SQL-computed expectation."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from etl.config import Settings
from etl.load.target import Target
from etl.warehouse import WAREHOUSE_TABLES

Row = tuple[Any, ...]


def rows(settings: Settings, table: str) -> list[Row]:
    """The contract columns (no surrogate id) of every row."""
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    spec = WAREHOUSE_TABLES[table]
    query = sql.SQL("SELECT {} FROM {}").format(target.columns(spec), target.table(table))
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        return conn.execute(query).fetchall()


def digest(settings: Settings, with_surrogates: bool = True) -> str:
    """One hash over every warehouse row in a fixed order."""
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    hashed = hashlib.sha256()
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn, conn.cursor() as cur:  # type: ignore[union-attr]
        for spec in WAREHOUSE_TABLES.values():
            columns = [sql.Identifier(spec.surrogate)] if spec.surrogate and with_surrogates else []
            columns += [target.column(spec.name, c) for c in spec.columns]
            order = sql.SQL(", ").join(columns)
            query = sql.SQL("COPY (SELECT {cols} FROM {t} ORDER BY {cols}) TO STDOUT").format(
                cols=order, t=target.table(spec.name)
            )
            hashed.update(spec.name.encode())
            with cur.copy(query) as copy:
                for block in copy:
                    hashed.update(block)
    return hashed.hexdigest()


def ledger(settings: Settings) -> list[Row]:
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        return conn.execute(
            "SELECT batch_id, tables FROM etl.load_ledger ORDER BY batch_id"
        ).fetchall()
