"""The seven sourced dimensions, one builder each. Inputs are current-state source rows
(one per id); every builder returns exactly its warehouse schema. SCD type 1: a batch
carries the new current values of the ids it touches, and load upserts them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pycountry

from etl.errors import DataError
from etl.transform.columns import conform
from etl.warehouse import WAREHOUSE_TABLES


def dim_location(address: pa.Table) -> pa.Table:
    """Grain: one row per address_id (renamed location_id); all address columns but timestamps."""
    columns = {name: address.column(name) for name in address.column_names}
    return conform(
        {**columns, "location_id": address.column("address_id")}, WAREHOUSE_TABLES["dim_location"]
    )


def dim_design(design: pa.Table) -> pa.Table:
    """Grain: one row per design_id."""
    return conform(
        {n: design.column(n) for n in design.column_names}, WAREHOUSE_TABLES["dim_design"]
    )


def dim_payment_type(payment_type: pa.Table) -> pa.Table:
    """Grain: one row per payment_type_id; the enum label as text."""
    return conform(
        {n: payment_type.column(n) for n in payment_type.column_names},
        WAREHOUSE_TABLES["dim_payment_type"],
    )


def dim_transaction(transaction: pa.Table) -> pa.Table:
    """Grain: one row per transaction_id; the order ids stay plain ints (no FK to facts)."""
    return conform(
        {n: transaction.column(n) for n in transaction.column_names},
        WAREHOUSE_TABLES["dim_transaction"],
    )


def currency_name(code: str) -> str:
    """The ISO 4217 name (pycountry's maintained tables): GBP -> 'Pound Sterling'."""
    found = pycountry.currencies.get(alpha_3=code)
    if found is None:
        raise DataError(f"dim_currency: {code!r} is not an ISO 4217 currency code")
    return str(found.name)


def dim_currency(currency: pa.Table) -> pa.Table:
    """Grain: one row per currency_id, with currency_name derived from the code."""
    codes = currency.column("currency_code").to_pylist()
    names = pa.array([currency_name(code) for code in codes], pa.string())
    columns = {n: currency.column(n) for n in currency.column_names}
    return conform({**columns, "currency_name": names}, WAREHOUSE_TABLES["dim_currency"])


def _require_parents(children: pa.Table, fk: str, parents: pa.Table, pk: str, target: str) -> None:
    missing = pc.filter(
        children.column(fk), pc.invert(pc.is_in(children.column(fk), parents.column(pk)))
    )
    if len(missing):
        raise DataError(
            f"{target}: {fk} {missing[0].as_py()} has no row in the {pk.removesuffix('_id')} state"
        )


def dim_staff(staff: pa.Table, department: pa.Table) -> pa.Table:
    """Grain: one row per staff_id, with its department's name and location."""
    _require_parents(staff, "department_id", department, "department_id", "dim_staff")
    parents = department.select(["department_id", "department_name", "location"])
    joined = staff.select(
        ["staff_id", "first_name", "last_name", "email_address", "department_id"]
    ).join(parents, keys="department_id", join_type="left outer")
    joined = joined.sort_by("staff_id")  # hash joins do not keep row order; bytes must be stable
    return conform(
        {n: joined.column(n) for n in joined.column_names}, WAREHOUSE_TABLES["dim_staff"]
    )


def dim_counterparty(counterparty: pa.Table, address: pa.Table) -> pa.Table:
    """Grain: one row per counterparty_id, with its legal address flattened in."""
    _require_parents(counterparty, "legal_address_id", address, "address_id", "dim_counterparty")
    legal = address.select(
        ["address_id", "address_line_1", "address_line_2", "district", "city", "postal_code", "country", "phone"]
    ).rename_columns(
        [
            "legal_address_id", "counterparty_legal_address_line_1", "counterparty_legal_address_line_2",
            "counterparty_legal_district", "counterparty_legal_city", "counterparty_legal_postal_code",
            "counterparty_legal_country", "counterparty_legal_phone_number",
        ]
    )  # fmt: skip
    joined = counterparty.select(
        ["counterparty_id", "counterparty_legal_name", "legal_address_id"]
    ).join(legal, keys="legal_address_id", join_type="left outer")
    joined = joined.sort_by("counterparty_id")  # hash joins do not keep row order
    return conform(
        {n: joined.column(n) for n in joined.column_names}, WAREHOUSE_TABLES["dim_counterparty"]
    )
