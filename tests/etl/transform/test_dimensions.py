"""Dimension builders on hand-built frames: renames, joins, NULLs, quirks, bad values."""

from __future__ import annotations

import pytest

from etl.errors import DataError
from etl.transform import dimensions
from etl.warehouse import WAREHOUSE_TABLES
from tests.etl.transform.frames import address, counterparty, department, frame, staff


def test_dim_location_keeps_nulls_and_apostrophes() -> None:
    out = dimensions.dim_location(frame("address", [address(15, "12 O'Connell St, Flat 2")]))
    assert out.schema == WAREHOUSE_TABLES["dim_location"].schema
    row = out.to_pylist()[0]
    assert row["location_id"] == 15
    assert row["address_line_1"] == "12 O'Connell St, Flat 2"
    assert row["address_line_2"] is None and row["district"] is None
    assert row["country"] == "Democratic People's Republic of Korea"


def test_dim_staff_joins_department_and_keeps_the_leds_typo() -> None:
    out = dimensions.dim_staff(
        frame("staff", [staff(1, 4)]), frame("department", [department(4, "Leds")])
    )
    assert out.schema == WAREHOUSE_TABLES["dim_staff"].schema
    assert out.to_pylist() == [{
        "staff_id": 1, "first_name": "Irving", "last_name": "O'Keefe", "department_name": "Dispatch",
        "location": "Leds", "email_address": "irving.o'keefe@terrifictotes.com",
    }]  # fmt: skip


def test_dim_staff_refuses_a_department_without_location() -> None:
    with pytest.raises(
        DataError,
        match=r"dim_staff.location: NULL, but the warehouse requires a value \(staff_id 1\)",
    ):
        dimensions.dim_staff(
            frame("staff", [staff(1, 4)]), frame("department", [department(4, None)])
        )


def test_dim_staff_refuses_an_unknown_department() -> None:
    with pytest.raises(
        DataError,
        match="dim_staff.department_id: department_id 9 has no row in the department state",
    ):
        dimensions.dim_staff(
            frame("staff", [staff(1, 9)]), frame("department", [department(4, "Leeds")])
        )


def test_dim_counterparty_flattens_the_legal_address() -> None:
    out = dimensions.dim_counterparty(
        frame("counterparty", [counterparty(1, 15), counterparty(2, 15)]),
        frame("address", [address(15, "7 Main St"), address(16)]),
    )
    assert out.schema == WAREHOUSE_TABLES["dim_counterparty"].schema
    rows = sorted(out.to_pylist(), key=lambda r: r["counterparty_id"])
    assert [r["counterparty_legal_address_line_1"] for r in rows] == ["7 Main St", "7 Main St"]
    assert rows[0]["counterparty_legal_name"] == "Leannon, Predovic and Morar"
    assert rows[0]["counterparty_legal_phone_number"] == "1803 637401"
    assert rows[0]["counterparty_legal_address_line_2"] is None


def test_dim_currency_names_come_from_iso_4217() -> None:
    rows = [{"currency_id": i, "currency_code": c, "created_at": None, "last_updated": None}
            for i, c in enumerate(["GBP", "USD", "EUR"], 1)]  # fmt: skip
    out = dimensions.dim_currency(frame("currency", rows))
    assert out.column("currency_name").to_pylist() == ["Pound Sterling", "US Dollar", "Euro"]


def test_unknown_currency_code_fails_under_the_fail_policy_not_a_null() -> None:
    rows = [{"currency_id": 4, "currency_code": "XYZ", "created_at": None, "last_updated": None}]
    with pytest.raises(DataError, match="'XYZ' is not an ISO 4217 currency code"):
        dimensions.dim_currency(frame("currency", rows))


def test_dim_transaction_keeps_one_order_id_null() -> None:
    rows = [
        {"transaction_id": 1, "transaction_type": "SALE", "sales_order_id": 1, "purchase_order_id": None,
         "created_at": None, "last_updated": None},
        {"transaction_id": 2, "transaction_type": "PURCHASE", "sales_order_id": None, "purchase_order_id": 1,
         "created_at": None, "last_updated": None},
    ]  # fmt: skip
    out = dimensions.dim_transaction(frame("transaction", rows))
    assert out.to_pylist() == [
        {
            "transaction_id": 1,
            "transaction_type": "SALE",
            "sales_order_id": 1,
            "purchase_order_id": None,
        },
        {
            "transaction_id": 2,
            "transaction_type": "PURCHASE",
            "sales_order_id": None,
            "purchase_order_id": 1,
        },
    ]


def test_dim_payment_type_and_dim_design() -> None:
    types = frame("payment_type", [{"payment_type_id": 3, "payment_type_name": "PURCHASE_PAYMENT",
                                    "created_at": None, "last_updated": None}])  # fmt: skip
    assert dimensions.dim_payment_type(types).to_pylist() == [
        {"payment_type_id": 3, "payment_type_name": "PURCHASE_PAYMENT"}
    ]
    design = frame("design", [{"design_id": 9, "created_at": None, "design_name": "Granite",
                               "file_location": "/lost+found", "file_name": "granite-20220430-l5fs.json",
                               "last_updated": None}])  # fmt: skip
    assert dimensions.dim_design(design).to_pylist() == [
        {"design_id": 9, "design_name": "Granite", "file_location": "/lost+found",
         "file_name": "granite-20220430-l5fs.json"}
    ]  # fmt: skip
