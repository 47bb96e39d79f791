"""The seven sourced dimensions, one builder each. Inputs are current-state source rows
(one per id); every builder returns exactly its warehouse schema, less the rows it set
aside (etl.transform.rejects). SCD type 1: a batch carries the new current values of the
ids it touches, and load upserts them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pycountry

from etl.errors import DataError
from etl.transform.columns import conform
from etl.transform.rejects import Problem, RejectLog
from etl.warehouse import WAREHOUSE_TABLES


def _columns(rows: pa.Table) -> dict[str, pa.ChunkedArray]:
    return {name: rows.column(name) for name in rows.column_names}


def dim_location(address: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per address_id (renamed location_id); all address columns but timestamps."""
    columns = {**_columns(address), "location_id": address.column("address_id")}
    return conform(columns, WAREHOUSE_TABLES["dim_location"], rejects)


def dim_design(design: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per design_id."""
    return conform(_columns(design), WAREHOUSE_TABLES["dim_design"], rejects)


def dim_payment_type(payment_type: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per payment_type_id; the enum label as text."""
    return conform(_columns(payment_type), WAREHOUSE_TABLES["dim_payment_type"], rejects)


def dim_transaction(transaction: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per transaction_id; the order ids stay plain ints (no FK to facts)."""
    return conform(_columns(transaction), WAREHOUSE_TABLES["dim_transaction"], rejects)


def currency_name(code: str) -> str:
    """The ISO 4217 name (pycountry's maintained tables): GBP -> 'Pound Sterling'."""
    found = pycountry.currencies.get(alpha_3=code)
    if found is None:
        raise DataError(f"{code!r} is not an ISO 4217 currency code")
    return str(found.name)


def dim_currency(currency: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per currency_id, with currency_name derived from the code; a code
    that is not ISO 4217 sets its row aside."""
    names: list[str | None] = []
    reasons: list[str] = []
    for code in currency.column("currency_code").to_pylist():
        if code is None:  # conform sets it aside as a NULL
            names.append(None)
            reasons.append("")
            continue
        try:
            names.append(currency_name(code))
            reasons.append("")
        except DataError as error:
            names.append(None)
            reasons.append(str(error))
    unknown = Problem(
        "currency_code",
        pa.array([bool(reason) for reason in reasons], pa.bool_()),
        pa.array(reasons, pa.string()),
    )
    columns = {**_columns(currency), "currency_name": pa.array(names, pa.string())}
    return conform(columns, WAREHOUSE_TABLES["dim_currency"], rejects, [unknown])


def _orphans(children: pa.Table, fk: str, parents: pa.Table, pk: str) -> Problem:
    """Children whose parent is in no state: their joined columns would be empty."""
    values = children.column(fk)
    mask = pc.invert(pc.is_in(values, value_set=parents.column(pk).combine_chunks()))
    reasons = pc.binary_join_element_wise(
        f"{fk} ",
        pc.cast(values, pa.string()),
        f" has no row in the {pk.removesuffix('_id')} state",
        "",
    )
    return Problem(fk, pc.fill_null(mask.combine_chunks(), True), reasons.combine_chunks())


def dim_staff(staff: pa.Table, department: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per staff_id, with its department's name and location."""
    parents = department.select(["department_id", "department_name", "location"])
    joined = staff.select(
        ["staff_id", "first_name", "last_name", "email_address", "department_id", "last_updated"]
    ).join(parents, keys="department_id", join_type="left outer")
    joined = joined.sort_by("staff_id")  # hash joins do not keep row order; bytes must be stable
    orphans = _orphans(joined, "department_id", department, "department_id")
    return conform(_columns(joined), WAREHOUSE_TABLES["dim_staff"], rejects, [orphans])


def dim_counterparty(
    counterparty: pa.Table, address: pa.Table, rejects: RejectLog | None = None
) -> pa.Table:
    """Grain: one row per counterparty_id, with its legal address flattened in."""
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
        ["counterparty_id", "counterparty_legal_name", "legal_address_id", "last_updated"]
    ).join(legal, keys="legal_address_id", join_type="left outer")
    joined = joined.sort_by("counterparty_id")  # hash joins do not keep row order
    orphans = _orphans(joined, "legal_address_id", address, "address_id")
    return conform(_columns(joined), WAREHOUSE_TABLES["dim_counterparty"], rejects, [orphans])
