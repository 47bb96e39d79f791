"""Small hand-built source frames for the pure transform tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from etl.transform.remodel import source_schema

SEEDED = datetime(2022, 11, 3, 14, 20, 49, 962000)


def frame(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=source_schema(table))


def address(
    address_id: int, line_1: str = "1 High St", when: datetime = SEEDED, **extra: Any
) -> dict[str, Any]:
    return {
        "address_id": address_id, "address_line_1": line_1, "address_line_2": None, "district": None,
        "city": "Leeds", "postal_code": "28441", "country": "Democratic People's Republic of Korea",
        "phone": "1803 637401", "created_at": SEEDED, "last_updated": when, **extra,
    }  # fmt: skip


def counterparty(
    counterparty_id: int, address_id: int, when: datetime = SEEDED, **extra: Any
) -> dict[str, Any]:
    return {
        "counterparty_id": counterparty_id, "counterparty_legal_name": "Leannon, Predovic and Morar",
        "legal_address_id": address_id, "commercial_contact": "Ann", "delivery_contact": "Bo",
        "created_at": SEEDED, "last_updated": when, **extra,
    }  # fmt: skip


def department(department_id: int, location: str | None, when: datetime = SEEDED) -> dict[str, Any]:
    return {
        "department_id": department_id, "department_name": "Dispatch", "location": location,
        "manager": "Mark Hanna", "created_at": SEEDED, "last_updated": when,
    }  # fmt: skip


def staff(staff_id: int, department_id: int, when: datetime = SEEDED) -> dict[str, Any]:
    return {
        "staff_id": staff_id, "first_name": "Irving", "last_name": "O'Keefe", "department_id": department_id,
        "email_address": "irving.o'keefe@terrifictotes.com", "created_at": SEEDED, "last_updated": when,
    }  # fmt: skip


def payment(payment_id: int, created: datetime, updated: datetime, paid: bool) -> dict[str, Any]:
    return {
        "payment_id": payment_id, "created_at": created, "last_updated": updated, "transaction_id": payment_id,
        "counterparty_id": 1, "payment_amount": Decimal("123456.78"), "currency_id": 2, "payment_type_id": 1,
        "paid": paid, "payment_date": "2024-11-15", "company_ac_number": 12345678,
        "counterparty_ac_number": 87654321,
    }  # fmt: skip


def sales_order(order_id: int, created: datetime) -> dict[str, Any]:
    return {
        "sales_order_id": order_id, "created_at": created, "last_updated": created, "design_id": 3,
        "staff_id": 7, "counterparty_id": 1, "units_sold": 54321, "unit_price": Decimal("3.99"),
        "currency_id": 1, "agreed_delivery_date": "2024-11-20", "agreed_payment_date": "2024-11-18",
        "agreed_delivery_location_id": 4,
    }  # fmt: skip
