"""The warehouse computed independently, in SQL, straight from the source database.

Reference queries for the mapping in spec/mapping.md. Tests and the soak (`python -m soak`)
compare what the pipeline produced (parquet or warehouse rows) with these, so the expectation
lives beside the simulator that makes the history rather than in the pipeline it checks:
dimensions are the source's current state; facts are every version that existed when some
extract succeeded (call `current_fact_versions` after each one and take the union).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

Row = tuple[Any, ...]

DIMENSIONS_SQL: dict[str, str] = {
    "dim_staff": """SELECT s.staff_id, s.first_name, s.last_name, d.department_name, d.location,
                           s.email_address
                    FROM staff s JOIN department d ON d.department_id = s.department_id""",
    "dim_location": """SELECT address_id, address_line_1, address_line_2, district, city, postal_code,
                              country, phone FROM address""",
    "dim_currency": """SELECT currency_id, currency_code,
                              CASE currency_code WHEN 'GBP' THEN 'Pound Sterling'
                                   WHEN 'USD' THEN 'US Dollar' WHEN 'EUR' THEN 'Euro' END
                       FROM currency""",
    "dim_design": "SELECT design_id, design_name, file_location, file_name FROM design",
    "dim_counterparty": """SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1,
                                  a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone
                           FROM counterparty c JOIN address a ON a.address_id = c.legal_address_id""",
    "dim_payment_type": "SELECT payment_type_id, payment_type_name::text FROM payment_type",
    "dim_transaction": """SELECT transaction_id, transaction_type::text, sales_order_id, purchase_order_id
                          FROM transaction""",
}


# Only versions whose date texts are 'YYYY-MM-DD' dates: the pipeline sets the others aside
# (etl.transform.rejects), so they are expected absent until corrected.
FACTS_SQL: dict[str, str] = {
    "fact_sales_order": """SELECT sales_order_id, created_at::date, created_at::time, last_updated::date,
                                  last_updated::time, staff_id, counterparty_id, units_sold, unit_price,
                                  currency_id, design_id, agreed_payment_date::date,
                                  agreed_delivery_date::date, agreed_delivery_location_id
                           FROM sales_order
                           WHERE agreed_payment_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                             AND pg_input_is_valid(agreed_payment_date, 'date')
                             AND agreed_delivery_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                             AND pg_input_is_valid(agreed_delivery_date, 'date')""",
    "fact_purchase_orders": """SELECT purchase_order_id, created_at::date, created_at::time,
                                      last_updated::date, last_updated::time, staff_id, counterparty_id,
                                      item_code, item_quantity, item_unit_price, currency_id,
                                      agreed_delivery_date::date, agreed_payment_date::date,
                                      agreed_delivery_location_id
                               FROM purchase_order
                               WHERE agreed_payment_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                                 AND pg_input_is_valid(agreed_payment_date, 'date')
                                 AND agreed_delivery_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                                 AND pg_input_is_valid(agreed_delivery_date, 'date')""",
    "fact_payment": """SELECT payment_id, created_at::date, created_at::time, last_updated::date,
                              last_updated::time, transaction_id, counterparty_id, payment_amount,
                              currency_id, payment_type_id, paid, payment_date::date
                       FROM payment
                       WHERE payment_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                         AND pg_input_is_valid(payment_date, 'date')""",
}

DIM_DATE_SQL = """SELECT d, extract(year FROM d)::int, extract(month FROM d)::int,
                         extract(day FROM d)::int, extract(isodow FROM d)::int,
                         to_char(d, 'FMDay'), to_char(d, 'FMMonth'), extract(quarter FROM d)::int
                  FROM unnest(%s::date[]) AS t(d)"""

# positions of the date columns in each FACTS_SQL row
FACT_DATE_POSITIONS = {"fact_sales_order": (1, 3, 11, 12), "fact_purchase_orders": (1, 3, 11, 12),
                       "fact_payment": (1, 3, 11)}  # fmt: skip


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
