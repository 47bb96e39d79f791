"""Fact builders: date/time split, text dates parsed, renames, exact money."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

from etl.errors import DataError
from etl.transform import facts
from etl.warehouse import WAREHOUSE_TABLES
from tests.etl.transform.frames import frame, payment, sales_order

CREATED = datetime(2024, 11, 14, 9, 12, 10, 51000)


def test_fact_sales_order_splits_timestamps_and_renames_staff() -> None:
    out = facts.fact_sales_order(frame("sales_order", [sales_order(5, CREATED)]))
    assert out.schema == WAREHOUSE_TABLES["fact_sales_order"].schema
    row = out.to_pylist()[0]
    assert (row["created_date"], row["created_time"]) == (
        date(2024, 11, 14),
        time(9, 12, 10, 51000),
    )
    assert (row["last_updated_date"], row["last_updated_time"]) == (
        date(2024, 11, 14),
        time(9, 12, 10, 51000),
    )
    assert row["sales_staff_id"] == 7
    assert row["unit_price"] == Decimal("3.99")
    assert (row["agreed_payment_date"], row["agreed_delivery_date"]) == (
        date(2024, 11, 18),
        date(2024, 11, 20),
    )


def test_an_impossible_agreed_date_names_table_and_column() -> None:
    bad = {**sales_order(5, CREATED), "agreed_delivery_date": "2024-02-30"}
    with pytest.raises(DataError, match=r"fact_sales_order.agreed_delivery_date: .*'2024-02-30'"):
        facts.fact_sales_order(frame("sales_order", [bad]))


def test_fact_payment_drops_account_numbers_and_keeps_amounts_exact() -> None:
    out = facts.fact_payment(frame("payment", [payment(1, CREATED, CREATED, False)]))
    assert "company_ac_number" not in out.column_names
    assert out.column("payment_amount").to_pylist() == [Decimal("123456.78")]
    assert out.column("payment_date").to_pylist() == [date(2024, 11, 15)]


def test_fact_purchase_orders_keeps_staff_id() -> None:
    row = {
        "purchase_order_id": 2, "created_at": CREATED, "last_updated": CREATED, "staff_id": 12,
        "counterparty_id": 3, "item_code": "ZDOI5EA", "item_quantity": 999,
        "item_unit_price": Decimal("999.99"), "currency_id": 3, "agreed_delivery_date": "2026-08-01",
        "agreed_payment_date": "2024-11-14", "agreed_delivery_location_id": 30,
    }  # fmt: skip
    out = facts.fact_purchase_orders(frame("purchase_order", [row])).to_pylist()[0]
    assert out["staff_id"] == 12 and out["item_code"] == "ZDOI5EA"
    assert out["item_unit_price"] == Decimal("999.99")
    assert out["agreed_delivery_date"] == date(2026, 8, 1)
