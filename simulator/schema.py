"""The totesys schema, created from the exact DDL of the real database.

`spec/totesys_source.sql` is the repository's one copy of that DDL. Like a pg_dump it creates the
tables first and adds keys, unique indexes and foreign keys afterwards, which is what the
seeder needs: bulk COPY into bare tables, then constraints, which validate every row.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

DDL_PATH = Path(__file__).resolve().parents[1] / "spec" / "totesys_source.sql"

# All 11 tables, parents before children.
TABLES: tuple[str, ...] = (
    "currency",
    "payment_type",
    "department",
    "address",
    "design",
    "staff",
    "counterparty",
    "sales_order",
    "purchase_order",
    "transaction",
    "payment",
)

PRIMARY_KEYS: dict[str, str] = {
    "currency": "currency_id",
    "payment_type": "payment_type_id",
    "department": "department_id",
    "address": "address_id",
    "design": "design_id",
    "staff": "staff_id",
    "counterparty": "counterparty_id",
    "sales_order": "sales_order_id",
    "purchase_order": "purchase_order_id",
    "transaction": "transaction_id",
    "payment": "payment_id",
}


def ddl_parts() -> tuple[str, str]:
    """(types and tables, keys/indexes/foreign keys): the DDL split before its first ALTER."""
    text = DDL_PATH.read_text()
    marker = text.index("\nALTER TABLE")
    return text[:marker], text[marker:]


def has_tables(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_name = ANY(%s)",
        (list(TABLES),),
    ).fetchone()
    return bool(row and row[0])


def drop_totesys(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Remove the totesys tables and enum types (only ours, nothing else in `public`)."""
    for table in reversed(TABLES):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
    for enum in ("PaymentTypeName", "TransactionType"):
        conn.execute(sql.SQL("DROP TYPE IF EXISTS {}").format(sql.Identifier("public", enum)))


def create_tables(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(ddl_parts()[0].encode())


def add_constraints(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(ddl_parts()[1].encode())


def sync_sequences(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Advance each SERIAL sequence past the ids loaded explicitly, as pg_dump does."""
    for table, column in PRIMARY_KEYS.items():
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({table_name}, {column_name}),"
                " coalesce(max({column}), 0) + 1, false) FROM {table}"
            ).format(
                table_name=sql.Literal(f"public.{table}"),
                column_name=sql.Literal(column),
                column=sql.Identifier(column),
                table=sql.Identifier(table),
            )
        )
