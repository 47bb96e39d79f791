"""Seeded totesys has the real database's counts, reference rows, quirks and invariants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from simulator.seed import REAL_SNAPSHOT, SeedError, SeedPlan, seed_totesys
from tests.simulator.catalog import content_digest


@pytest.fixture(scope="module")
def scale_1(make_database: Callable[[str], str]) -> str:
    url = make_database("seed_scale_1")
    seed_totesys(url, SeedPlan(scale=1))
    return url


def scalar(url: str, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    statement: bytes | sql.Composed = query.encode() if isinstance(query, str) else query
    with psycopg.connect(url) as conn:
        row = conn.execute(statement, params or None).fetchone()
    assert row is not None
    return row[0]


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode()).fetchall()


def test_scale_1_counts_are_the_real_database_on_2024_11_14(scale_1: str) -> None:
    counts = dict(
        rows(
            scale_1,
            """
        SELECT 'sales_order', count(*) FROM sales_order UNION ALL
        SELECT 'purchase_order', count(*) FROM purchase_order UNION ALL
        SELECT 'transaction', count(*) FROM transaction UNION ALL
        SELECT 'payment', count(*) FROM payment UNION ALL
        SELECT 'design', count(*) FROM design UNION ALL
        SELECT 'address', count(*) FROM address UNION ALL
        SELECT 'counterparty', count(*) FROM counterparty UNION ALL
        SELECT 'staff', count(*) FROM staff""",
        )
    )
    assert counts == {
        "sales_order": 11_175, "purchase_order": 4_640, "transaction": 15_815,
        "payment": 15_815, "design": 472, "address": 30, "counterparty": 20, "staff": 20,
    }  # fmt: skip
    newest = scalar(scale_1, "SELECT max(greatest(created_at, last_updated)) FROM payment")
    assert newest.date() < REAL_SNAPSHOT


def test_exact_reference_rows(scale_1: str) -> None:
    assert rows(scale_1, "SELECT currency_id, currency_code FROM currency ORDER BY 1") == [
        (1, "GBP"), (2, "USD"), (3, "EUR"),
    ]  # fmt: skip
    assert rows(scale_1, "SELECT payment_type_name::text FROM payment_type ORDER BY 1") == [
        ("PURCHASE_PAYMENT",), ("PURCHASE_REFUND",), ("SALES_RECEIPT",), ("SALES_REFUND",),
    ]  # fmt: skip
    assert rows(scale_1, "SELECT location FROM department WHERE department_name = 'Dispatch'") == [
        ("Leds",)
    ]
    per_department = dict(rows(scale_1, "SELECT department_id, count(*) FROM staff GROUP BY 1"))
    assert per_department == {2: 5, 3: 5, 6: 3, 5: 2, 7: 2, 8: 2, 4: 1}
    stamp = "2022-11-03 14:20:49.962"
    assert scalar(scale_1, "SELECT count(*) FROM department WHERE last_updated = %s", (stamp,)) == 8


def test_real_data_quirks(scale_1: str) -> None:
    assert scalar(scale_1, "SELECT count(*) FROM address WHERE address_line_2 IS NULL") == 20
    assert scalar(scale_1, "SELECT count(*) FROM address WHERE district IS NULL") == 14
    assert scalar(scale_1, "SELECT count(*) FROM address WHERE country LIKE '%''%'") >= 1
    assert scalar(scale_1, "SELECT count(DISTINCT legal_address_id) FROM counterparty") == 14
    assert scalar(scale_1, "SELECT count(*) FROM staff WHERE email_address LIKE '%''%'") >= 1
    assert (
        scalar(
            scale_1,
            "SELECT count(*) FROM staff WHERE email_address <> "
            "lower(first_name || '.' || last_name || '@terrifictotes.com')",
        )
        == 0
    )
    assert scalar(scale_1, "SELECT count(*) FROM address WHERE phone !~ '^\\d{4} \\d{6}$'") == 0
    # payment 9 <-> transaction 10: ids usually but not always agree, as in the real data
    assert scalar(scale_1, "SELECT count(*) FROM payment WHERE payment_id <> transaction_id") > 0
    assert (
        scalar(
            scale_1,
            "SELECT count(*) FROM design WHERE file_name !~ '^[a-z]+-\\d{8}-[a-z0-9]{4}\\.json$'",
        )
        == 0
    )
    assert scalar(scale_1, "SELECT count(*) - count(DISTINCT file_name) FROM design") == 0


def test_value_domains(scale_1: str) -> None:
    assert (
        scalar(
            scale_1,
            "SELECT count(*) FROM sales_order WHERE unit_price NOT BETWEEN 2 AND 4"
            " OR units_sold NOT BETWEEN 1000 AND 100000",
        )
        == 0
    )
    assert (
        scalar(
            scale_1,
            "SELECT count(*) FROM purchase_order WHERE item_quantity NOT BETWEEN 1 AND 999"
            " OR item_unit_price NOT BETWEEN 3 AND 999.99 OR item_code !~ '^[A-Z0-9]{7}$'",
        )
        == 0
    )
    assert scalar(scale_1, "SELECT count(*) - count(DISTINCT item_code) FROM purchase_order") == 0
    for table in ("sales_order", "purchase_order"):
        assert (
            scalar(
                scale_1,
                sql.SQL("""SELECT count(*) FROM {}
            WHERE agreed_payment_date !~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$'
               OR agreed_delivery_date !~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$'
               OR agreed_payment_date::date - created_at::date NOT BETWEEN 0 AND 6
               OR agreed_delivery_date::date - created_at::date NOT BETWEEN 0 AND 650
               OR extract(isodow FROM created_at) > 5
               OR created_at::time NOT BETWEEN '08:00:09.8' AND '18:59:10.8'
               OR last_updated <> created_at""").format(sql.Identifier(table)),
            )
            == 0
        )
    long_tail = scalar(
        scale_1,
        "SELECT count(*) FROM sales_order WHERE agreed_delivery_date::date - created_at::date > 7",
    )
    assert 20 <= long_tail <= 130  # 65 of 11,175 in the real data
    currencies = dict(rows(scale_1, "SELECT currency_id, count(*) FROM sales_order GROUP BY 1"))
    assert min(currencies.values()) > 0.3 * 11_175 / 1.2
    assert (
        scalar(
            scale_1,
            "SELECT count(*) FROM sales_order WHERE extract(millisecond FROM created_at)"
            " <> floor(extract(millisecond FROM created_at))",
        )
        == 0
    )
    assert (
        scalar(
            scale_1,
            "SELECT count(DISTINCT extract(millisecond FROM created_at)::int % 1000)"
            " FROM sales_order",
        )
        > 500
    )


def test_orders_transactions_and_payments_agree(scale_1: str) -> None:
    mismatches = scalar(
        scale_1,
        """
        WITH orders AS (
            SELECT 'SALE' AS kind, sales_order_id AS id, created_at, counterparty_id, currency_id,
                   units_sold * unit_price AS amount, agreed_payment_date, 1 AS payment_type_id
            FROM sales_order
            UNION ALL
            SELECT 'PURCHASE', purchase_order_id, created_at, counterparty_id, currency_id,
                   item_quantity * item_unit_price, agreed_payment_date, 3 FROM purchase_order)
        SELECT count(*) FROM orders o
        FULL JOIN transaction t ON t.transaction_type::text = o.kind
             AND coalesce(t.sales_order_id, t.purchase_order_id) = o.id
        FULL JOIN payment p ON p.transaction_id = t.transaction_id
        WHERE o.id IS NULL OR t.transaction_id IS NULL OR p.payment_id IS NULL
           OR t.created_at <> o.created_at OR p.created_at <> o.created_at
           OR t.last_updated <> t.created_at
           OR p.counterparty_id <> o.counterparty_id OR p.currency_id <> o.currency_id
           OR p.payment_amount <> o.amount OR p.payment_date <> o.agreed_payment_date
           OR p.payment_type_id <> o.payment_type_id
           OR (t.sales_order_id IS NULL) = (t.purchase_order_id IS NULL)
           OR p.company_ac_number NOT BETWEEN 10000000 AND 99999999""",
    )
    assert mismatches == 0


def test_payments_are_paid_only_by_the_weekday_job(scale_1: str) -> None:
    wrongly_paid = scalar(
        scale_1,
        """
        SELECT count(*) FROM payment WHERE paid AND (
            extract(isodow FROM payment_date::date) > 5
            OR payment_date::date = created_at::date
            OR last_updated::date <> payment_date::date
            OR last_updated::time NOT BETWEEN '07:55:11' AND '07:55:11.999')""",
    )
    assert wrongly_paid == 0
    missed = scalar(
        scale_1,
        """
        SELECT count(*) FROM payment WHERE NOT paid AND (
            extract(isodow FROM payment_date::date) <= 5
            AND payment_date::date <> created_at::date AND payment_date::date < %s)""",
        (REAL_SNAPSHOT,),
    )
    assert missed == 0
    assert scalar(scale_1, "SELECT count(*) FROM payment WHERE paid") > 5000
    assert (
        scalar(
            scale_1, "SELECT count(*) FROM payment WHERE NOT paid AND last_updated <> created_at"
        )
        == 0
    )


def test_same_seed_same_rows_other_seed_other_rows(make_database: Callable[[str], str]) -> None:
    first, second, other = (make_database("determinism") for _ in range(3))
    plan = SeedPlan(scale=0.05, seed=7)
    seed_totesys(first, plan)
    seed_totesys(second, plan)
    seed_totesys(other, SeedPlan(scale=0.05, seed=8))

    assert content_digest(first) == content_digest(second)
    assert content_digest(first) != content_digest(other)


def test_reseeding_needs_replace_and_then_starts_over(make_database: Callable[[str], str]) -> None:
    url = make_database("reseed")
    seed_totesys(url, SeedPlan(scale=0.01))
    with pytest.raises(SeedError, match="--replace"):
        seed_totesys(url, SeedPlan(scale=0.01))

    counts = seed_totesys(url, SeedPlan(scale=0.02), replace=True)

    assert counts["sales_order"] == round(11_175 * 0.02)


@pytest.mark.slow
def test_scale_10_matches_its_counts(make_database: Callable[[str], str]) -> None:
    counts = seed_totesys(make_database("scale_10"), SeedPlan(scale=10))
    assert counts["sales_order"] == 111_750
    assert counts["purchase_order"] == 46_400
    assert counts["transaction"] == counts["payment"] == 158_150
    assert counts["design"] == 4_720
