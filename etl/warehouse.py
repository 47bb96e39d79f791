"""The target contract: the 11 warehouse tables of spec/warehouse.sql as Arrow schemas.

Transform writes exactly these columns and types to parquet; load checks a prepared
warehouse against them. Dimensions are keyed on the source's natural id (SCD1); facts keep
one row per source-row version, identified by (source id, last_updated_date,
last_updated_time), and get their `*_record_id` from the warehouse's own sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

MONEY = pa.decimal128(10, 2)  # every source amount is numeric(10,2); exact end to end
TIME = pa.time32("ms")  # source timestamps have millisecond precision


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    kind: str  # "dim" | "fact"
    key: tuple[str, ...]  # natural id (dims) or version key (facts)
    schema: pa.Schema
    surrogate: str | None = None  # facts: the SERIAL *_record_id the warehouse assigns

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


def _schema(*fields: tuple[str, pa.DataType] | tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema(
        [pa.field(f[0], f[1], nullable=f[2] if len(f) == 3 else False) for f in fields]
    )


_I, _S, _D = pa.int32(), pa.string(), pa.date32()


def _version(source_id: str) -> tuple[str, str, str]:
    return (source_id, "last_updated_date", "last_updated_time")


_FACT_TIMES = (
    ("created_date", _D),
    ("created_time", TIME),
    ("last_updated_date", _D),
    ("last_updated_time", TIME),
)

DIMENSIONS: tuple[WarehouseTable, ...] = (
    WarehouseTable("dim_date", "dim", ("date_id",), _schema(
        ("date_id", _D), ("year", _I), ("month", _I), ("day", _I), ("day_of_week", _I),
        ("day_name", _S), ("month_name", _S), ("quarter", _I))),
    WarehouseTable("dim_staff", "dim", ("staff_id",), _schema(
        ("staff_id", _I), ("first_name", _S), ("last_name", _S), ("department_name", _S),
        ("location", _S), ("email_address", _S))),
    WarehouseTable("dim_location", "dim", ("location_id",), _schema(
        ("location_id", _I), ("address_line_1", _S), ("address_line_2", _S, True),
        ("district", _S, True), ("city", _S), ("postal_code", _S), ("country", _S), ("phone", _S))),
    WarehouseTable("dim_currency", "dim", ("currency_id",), _schema(
        ("currency_id", _I), ("currency_code", _S), ("currency_name", _S))),
    WarehouseTable("dim_design", "dim", ("design_id",), _schema(
        ("design_id", _I), ("design_name", _S), ("file_location", _S), ("file_name", _S))),
    WarehouseTable("dim_counterparty", "dim", ("counterparty_id",), _schema(
        ("counterparty_id", _I), ("counterparty_legal_name", _S),
        ("counterparty_legal_address_line_1", _S), ("counterparty_legal_address_line_2", _S, True),
        ("counterparty_legal_district", _S, True), ("counterparty_legal_city", _S),
        ("counterparty_legal_postal_code", _S), ("counterparty_legal_country", _S),
        ("counterparty_legal_phone_number", _S))),
    WarehouseTable("dim_payment_type", "dim", ("payment_type_id",), _schema(
        ("payment_type_id", _I), ("payment_type_name", _S))),
    WarehouseTable("dim_transaction", "dim", ("transaction_id",), _schema(
        ("transaction_id", _I), ("transaction_type", _S), ("sales_order_id", _I, True),
        ("purchase_order_id", _I, True))),
)  # fmt: skip

FACTS: tuple[WarehouseTable, ...] = (
    WarehouseTable("fact_sales_order", "fact", _version("sales_order_id"), _schema(
        ("sales_order_id", _I), *_FACT_TIMES, ("sales_staff_id", _I), ("counterparty_id", _I),
        ("units_sold", _I), ("unit_price", MONEY), ("currency_id", _I), ("design_id", _I),
        ("agreed_payment_date", _D), ("agreed_delivery_date", _D),
        ("agreed_delivery_location_id", _I)), "sales_record_id"),
    WarehouseTable("fact_purchase_orders", "fact", _version("purchase_order_id"), _schema(
        ("purchase_order_id", _I), *_FACT_TIMES, ("staff_id", _I), ("counterparty_id", _I),
        ("item_code", _S), ("item_quantity", _I), ("item_unit_price", MONEY), ("currency_id", _I),
        ("agreed_delivery_date", _D), ("agreed_payment_date", _D),
        ("agreed_delivery_location_id", _I)), "purchase_record_id"),
    WarehouseTable("fact_payment", "fact", _version("payment_id"), _schema(
        ("payment_id", _I), *_FACT_TIMES, ("transaction_id", _I), ("counterparty_id", _I),
        ("payment_amount", MONEY), ("currency_id", _I), ("payment_type_id", _I), ("paid", pa.bool_()),
        ("payment_date", _D)), "payment_record_id"),
)  # fmt: skip

# Dims before facts: the warehouse's foreign keys hold at every commit.
WAREHOUSE_TABLES: dict[str, WarehouseTable] = {t.name: t for t in (*DIMENSIONS, *FACTS)}

# PostgreSQL types of spec/warehouse.sql: numeric(10,2) only on fact_sales_order.unit_price,
# plain numeric on the other amounts, varchar without length everywhere.
_PG_TYPES = {pa.int32(): "int", pa.string(): "varchar", pa.date32(): "date", TIME: "time",
             pa.bool_(): "boolean"}  # fmt: skip
_PG_TYPE_OVERRIDES = {("fact_sales_order", "unit_price"): "numeric(10, 2)"}


def postgres_type(table: str, field: pa.Field) -> str:
    if (table, field.name) in _PG_TYPE_OVERRIDES:
        return _PG_TYPE_OVERRIDES[(table, field.name)]
    if pa.types.is_decimal(field.type):
        return "numeric"
    return _PG_TYPES[field.type]


# The ERD's Ref lines: (fact, column) -> (dimension, key).
FOREIGN_KEYS: tuple[tuple[str, str, str, str], ...] = (
    *((f, c, "dim_date", "date_id") for f in ("fact_sales_order", "fact_purchase_orders")
      for c in ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date")),
    *(("fact_payment", c, "dim_date", "date_id") for c in ("created_date", "last_updated_date", "payment_date")),
    ("fact_sales_order", "sales_staff_id", "dim_staff", "staff_id"),
    ("fact_purchase_orders", "staff_id", "dim_staff", "staff_id"),
    *((f, "counterparty_id", "dim_counterparty", "counterparty_id") for f in
      ("fact_sales_order", "fact_purchase_orders", "fact_payment")),
    *((f, "currency_id", "dim_currency", "currency_id") for f in
      ("fact_sales_order", "fact_purchase_orders", "fact_payment")),
    ("fact_sales_order", "design_id", "dim_design", "design_id"),
    ("fact_sales_order", "agreed_delivery_location_id", "dim_location", "location_id"),
    ("fact_purchase_orders", "agreed_delivery_location_id", "dim_location", "location_id"),
    ("fact_payment", "transaction_id", "dim_transaction", "transaction_id"),
    ("fact_payment", "payment_type_id", "dim_payment_type", "payment_type_id"),
)  # fmt: skip
