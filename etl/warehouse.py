"""The warehouse models: each of the 11 tables of spec/warehouse.sql declared once.

A declaration states everything the pipeline knows about a table: its grain, its key, its
columns with their Arrow types and nullability, the foreign keys of its columns, the source
tables it is built from, and the name of its builder in `etl/transform/`. Transform writes
exactly these columns to parquet; load creates and checks the warehouse from them;
reconcile and remodel read the sources from them; `simulator/expectations.py` takes its
column lists from them. `tests/etl/test_warehouse.py` keeps spec/warehouse.sql and the
tables of spec/mapping.md equal to these declarations.

Dimensions are keyed on the source's natural id (SCD1); facts keep one row per source-row
version, identified by (source id, last_updated_date, last_updated_time), and get their
`*_record_id` from the warehouse's own sequence.

The core cannot import `etl.transform` (tests/etl/test_floor_plan.py), so a builder is
named here as "module.function" and `etl.transform.remodel.BUILDERS` resolves the names;
a test checks that it holds every declared builder and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

MONEY = pa.decimal128(10, 2)  # every source amount is numeric(10,2); exact end to end
TIME = pa.time32("ms")  # source timestamps have millisecond precision

# Grains: what one row of a table stands for.
CURRENT = "current"  # one row per natural id, with its current values (a dimension, SCD1)
VERSION = "version"  # one row per version of a source row (a fact)
CALENDAR = "calendar"  # one row per date a fact refers to (dim_date, not sourced)


@dataclass(frozen=True)
class Source:
    """A source table a warehouse table is built from. The first source of a table is its
    own (`via` is its primary key); any further one is a parent whose columns are copied
    in, joined on `via`, the column of the own source that holds the parent's id. A change
    to a parent row so changes every row of the table that points at it."""

    table: str
    via: str


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    grain: str  # CURRENT | VERSION | CALENDAR
    key: tuple[str, ...]  # natural id (dims) or version key (facts)
    schema: pa.Schema
    builder: str  # "module.function" in etl/transform/, resolved by remodel.BUILDERS
    sources: tuple[Source, ...] = ()  # the own source first, then the parents
    # built chunk by chunk: each row comes from one row of a source too large to hold whole
    row_wise: bool = False
    surrogate: str | None = None  # facts: the SERIAL *_record_id the warehouse assigns
    # (column, dimension) pairs: a tuple, so a declaration stays immutable and hashable
    references: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return "fact" if self.grain == VERSION else "dim"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    @property
    def date_columns(self) -> tuple[str, ...]:
        """The date columns: on a fact, each one refers to dim_date."""
        return tuple(f.name for f in self.schema if pa.types.is_date32(f.type))

    @property
    def parents(self) -> tuple[Source, ...]:
        return self.sources[1:]


def _schema(*fields: tuple[str, pa.DataType] | tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema(
        [pa.field(f[0], f[1], nullable=f[2] if len(f) == 3 else False) for f in fields]
    )


_I, _S, _D = pa.int32(), pa.string(), pa.date32()
NULLABLE = True


def _dim(name: str, builder: str, sources: tuple[Source, ...], columns: pa.Schema,
         row_wise: bool = False) -> WarehouseTable:  # fmt: skip
    """A sourced dimension: keyed on its first column, the own source's id."""
    return WarehouseTable(name, CURRENT, (columns.names[0],), columns, builder, sources, row_wise)


def _fact(name: str, source: str, surrogate: str, columns: pa.Schema,
          references: Mapping[str, str]) -> WarehouseTable:  # fmt: skip
    """A fact from one source: one row per version, keyed on (source id, last updated)."""
    source_id = columns.names[0]
    key = (source_id, "last_updated_date", "last_updated_time")
    return WarehouseTable(name, VERSION, key, columns, f"facts.{name}", (Source(source, source_id),),
                          True, surrogate, tuple(references.items()))  # fmt: skip


_FACT_TIMES = (
    ("created_date", _D),
    ("created_time", TIME),
    ("last_updated_date", _D),
    ("last_updated_time", TIME),
)

# Columns in the order of spec/warehouse.sql; NOT NULL unless marked NULLABLE.
DIMENSIONS: tuple[WarehouseTable, ...] = (
    WarehouseTable("dim_date", CALENDAR, ("date_id",), _schema(
        ("date_id", _D), ("year", _I), ("month", _I), ("day", _I), ("day_of_week", _I),
        ("day_name", _S), ("month_name", _S), ("quarter", _I)),
        builder="dim_date.dim_date"),
    _dim("dim_staff", "dimensions.dim_staff",
         (Source("staff", "staff_id"), Source("department", "department_id")), _schema(
        ("staff_id", _I), ("first_name", _S), ("last_name", _S), ("department_name", _S),
        ("location", _S), ("email_address", _S))),
    _dim("dim_location", "dimensions.dim_location", (Source("address", "address_id"),), _schema(
        ("location_id", _I), ("address_line_1", _S), ("address_line_2", _S, NULLABLE),
        ("district", _S, NULLABLE), ("city", _S), ("postal_code", _S), ("country", _S),
        ("phone", _S))),
    _dim("dim_currency", "dimensions.dim_currency", (Source("currency", "currency_id"),), _schema(
        ("currency_id", _I), ("currency_code", _S), ("currency_name", _S))),
    _dim("dim_design", "dimensions.dim_design", (Source("design", "design_id"),), _schema(
        ("design_id", _I), ("design_name", _S), ("file_location", _S), ("file_name", _S))),
    _dim("dim_counterparty", "dimensions.dim_counterparty",
         (Source("counterparty", "counterparty_id"), Source("address", "legal_address_id")), _schema(
        ("counterparty_id", _I), ("counterparty_legal_name", _S),
        ("counterparty_legal_address_line_1", _S), ("counterparty_legal_address_line_2", _S, NULLABLE),
        ("counterparty_legal_district", _S, NULLABLE), ("counterparty_legal_city", _S),
        ("counterparty_legal_postal_code", _S), ("counterparty_legal_country", _S),
        ("counterparty_legal_phone_number", _S))),
    _dim("dim_payment_type", "dimensions.dim_payment_type",
         (Source("payment_type", "payment_type_id"),), _schema(
        ("payment_type_id", _I), ("payment_type_name", _S))),
    _dim("dim_transaction", "dimensions.dim_transaction",
         (Source("transaction", "transaction_id"),), _schema(
        ("transaction_id", _I), ("transaction_type", _S), ("sales_order_id", _I, NULLABLE),
        ("purchase_order_id", _I, NULLABLE)),
         row_wise=True),
)  # fmt: skip

# Every fact refers to dim_date from each of its date columns, besides these.
FACTS: tuple[WarehouseTable, ...] = (
    _fact("fact_sales_order", "sales_order", "sales_record_id", _schema(
        ("sales_order_id", _I), *_FACT_TIMES, ("sales_staff_id", _I), ("counterparty_id", _I),
        ("units_sold", _I), ("unit_price", MONEY), ("currency_id", _I), ("design_id", _I),
        ("agreed_payment_date", _D), ("agreed_delivery_date", _D),
        ("agreed_delivery_location_id", _I)),
        {"sales_staff_id": "dim_staff", "counterparty_id": "dim_counterparty",
         "currency_id": "dim_currency", "design_id": "dim_design",
         "agreed_delivery_location_id": "dim_location"}),
    _fact("fact_purchase_orders", "purchase_order", "purchase_record_id", _schema(
        ("purchase_order_id", _I), *_FACT_TIMES, ("staff_id", _I), ("counterparty_id", _I),
        ("item_code", _S), ("item_quantity", _I), ("item_unit_price", MONEY), ("currency_id", _I),
        ("agreed_delivery_date", _D), ("agreed_payment_date", _D),
        ("agreed_delivery_location_id", _I)),
        {"staff_id": "dim_staff", "counterparty_id": "dim_counterparty",
         "currency_id": "dim_currency", "agreed_delivery_location_id": "dim_location"}),
    _fact("fact_payment", "payment", "payment_record_id", _schema(
        ("payment_id", _I), *_FACT_TIMES, ("transaction_id", _I), ("counterparty_id", _I),
        ("payment_amount", MONEY), ("currency_id", _I), ("payment_type_id", _I), ("paid", pa.bool_()),
        ("payment_date", _D)),
        {"transaction_id": "dim_transaction", "counterparty_id": "dim_counterparty",
         "currency_id": "dim_currency", "payment_type_id": "dim_payment_type"}),
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


# The ERD's Ref lines, (fact, column) -> (dimension, key): every date column to dim_date,
# then each fact's declared references.
FOREIGN_KEYS: tuple[tuple[str, str, str, str], ...] = tuple(
    (fact.name, column, dim, WAREHOUSE_TABLES[dim].key[0])
    for fact in FACTS
    for column, dim in (
        *((c, "dim_date") for c in fact.date_columns),
        *fact.references,
    )
)
