"""The warehouse computed independently, in SQL, straight from the source database.

Reference queries for the mapping in spec/mapping.md. Tests and the soak (`python -m soak`)
compare what the pipeline produced (parquet or warehouse rows) with these, so the expectation
lives beside the simulator that makes the history rather than in the pipeline it checks:
dimensions are the source's current state; facts are every version that existed when some
extract succeeded (call `current_fact_versions` after each one and take the union).

Each query is an independent second implementation of a builder: its own joins, casts and
filters, in SQL. Only the list and order of the columns it selects is read from the
declarations (etl/warehouse.py), so a column moved or renamed there needs no edit here
unless its value is computed; `select` refuses an expression for a column the declaration
does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import psycopg

from etl.warehouse import FACTS, WAREHOUSE_TABLES

Row = tuple[Any, ...]


def select(table: str, source: str, computed: Mapping[str, str] | None = None,
           where: str = "") -> str:  # fmt: skip
    """SELECT every column of a warehouse table, in its declared order, FROM `source`: a
    column is the same-named source column unless `computed` gives its expression."""
    columns = WAREHOUSE_TABLES[table].columns
    computed = computed or {}
    unknown = sorted(set(computed) - set(columns))
    if unknown:
        raise ValueError(f"{table} declares no column {', '.join(unknown)}")
    listed = ", ".join(computed.get(column, column) for column in columns)
    query = f"SELECT {listed} FROM {source}"  # noqa: S608 - constants of this module only
    return query + (f" WHERE {where}" if where else "")


DIMENSIONS_SQL: dict[str, str] = {
    "dim_staff": select("dim_staff", "staff s JOIN department d ON d.department_id = s.department_id",
                        {"department_name": "d.department_name", "location": "d.location"}),
    "dim_location": select("dim_location", "address", {"location_id": "address_id"}),
    "dim_currency": select("dim_currency", "currency", {
        "currency_name": """CASE currency_code WHEN 'GBP' THEN 'Pound Sterling'
                            WHEN 'USD' THEN 'US Dollar' WHEN 'EUR' THEN 'Euro' END"""}),
    "dim_design": select("dim_design", "design"),
    "dim_counterparty": select(
        "dim_counterparty", "counterparty c JOIN address a ON a.address_id = c.legal_address_id", {
            f"counterparty_legal_{part}": f"a.{part}" for part in (
                "address_line_1", "address_line_2", "district", "city", "postal_code", "country")
        } | {"counterparty_legal_phone_number": "a.phone"}),
    "dim_payment_type": select("dim_payment_type", "payment_type",
                               {"payment_type_name": "payment_type_name::text"}),
    "dim_transaction": select("dim_transaction", "transaction",
                              {"transaction_type": "transaction_type::text"}),
}  # fmt: skip

# Every fact splits its two timestamps and parses its text dates.
_TIMES = {
    "created_date": "created_at::date",
    "created_time": "created_at::time",
    "last_updated_date": "last_updated::date",
    "last_updated_time": "last_updated::time",
}


def _valid_dates(*columns: str) -> str:
    return " AND ".join(
        f"{c} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$' AND pg_input_is_valid({c}, 'date')"
        for c in columns
    )


def _parsed(*columns: str) -> dict[str, str]:
    return {c: f"{c}::date" for c in columns}


# Only versions whose date texts are 'YYYY-MM-DD' dates: the pipeline sets the others aside
# (etl.transform.rejects), so they are expected absent until corrected.
_AGREED = ("agreed_payment_date", "agreed_delivery_date")
FACTS_SQL: dict[str, str] = {
    "fact_sales_order": select("fact_sales_order", "sales_order",
                               {**_TIMES, "sales_staff_id": "staff_id", **_parsed(*_AGREED)},
                               _valid_dates(*_AGREED)),
    "fact_purchase_orders": select("fact_purchase_orders", "purchase_order",
                                   {**_TIMES, **_parsed(*_AGREED)}, _valid_dates(*_AGREED)),
    "fact_payment": select("fact_payment", "payment", {**_TIMES, **_parsed("payment_date")},
                           _valid_dates("payment_date")),
}  # fmt: skip

DIM_DATE_SQL = select("dim_date", "unnest(%s::date[]) AS t(d)", {
    "date_id": "d", "year": "extract(year FROM d)::int", "month": "extract(month FROM d)::int",
    "day": "extract(day FROM d)::int", "day_of_week": "extract(isodow FROM d)::int",
    "day_name": "to_char(d, 'FMDay')", "month_name": "to_char(d, 'FMMonth')",
    "quarter": "extract(quarter FROM d)::int"})  # fmt: skip

# positions of the date columns in each FACTS_SQL row
FACT_DATE_POSITIONS: dict[str, tuple[int, ...]] = {
    fact.name: tuple(fact.columns.index(c) for c in fact.date_columns) for fact in FACTS
}


def current_dimensions(url: str) -> dict[str, set[Row]]:
    with psycopg.connect(url) as conn:
        return {
            name: set(conn.execute(query.encode()).fetchall())
            for name, query in DIMENSIONS_SQL.items()
        }


def current_fact_versions(url: str) -> dict[str, set[Row]]:
    """The version of every source row present now: call after each extract and union."""
    with psycopg.connect(url) as conn:
        return {
            name: set(conn.execute(query.encode()).fetchall()) for name, query in FACTS_SQL.items()
        }


def calendar(url: str, facts: dict[str, set[Row]]) -> set[Row]:
    dates: set[date] = {
        row[i] for name, rows in facts.items() for row in rows for i in FACT_DATE_POSITIONS[name]
    }
    with psycopg.connect(url) as conn:
        return set(conn.execute(DIM_DATE_SQL.encode(), (sorted(dates),)).fetchall())
