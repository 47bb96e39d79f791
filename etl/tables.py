"""The source contract: the 11 totesys tables we extract, their keys and columns.

This is the allow-list: a table or column name reaches SQL only if it is in here, and it
is composed with `psycopg.sql.Identifier`, never formatted into a string. Column types are
the contract both the extract (schema drift check) and the transform (typed CSV read) use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import sql

from etl.errors import ConfigError

REPLICATION_KEY = "last_updated"
# The schema the source tables live in: every query names it, so a schema earlier on the
# login's search_path (a "$user" schema holding a table of the same name) cannot stand in.
SOURCE_SCHEMA = "public"


def source_table(name: str) -> sql.Identifier:
    """A source table, schema-qualified (`name` comes from the allow-list)."""
    return sql.Identifier(SOURCE_SCHEMA, name)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # int | text | numeric | bool | timestamp
    nullable: bool = False


@dataclass(frozen=True)
class SourceTable:
    name: str
    primary_key: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


def _table(name: str, *columns: Column) -> SourceTable:
    return SourceTable(name, columns[0].name, columns)


def _ts(name: str) -> Column:
    return Column(name, "timestamp")


def _int(name: str, nullable: bool = False) -> Column:
    return Column(name, "int", nullable)


def _text(name: str, nullable: bool = False) -> Column:
    return Column(name, "text", nullable)


# Column order is the source DDL's order (spec/totesys_source.sql).
SOURCE_TABLES: dict[str, SourceTable] = {
    table.name: table
    for table in (
        _table("counterparty", _int("counterparty_id"), _text("counterparty_legal_name"),
               _int("legal_address_id"), _text("commercial_contact", True),
               _text("delivery_contact", True), _ts("created_at"), _ts("last_updated")),
        _table("currency", _int("currency_id"), _text("currency_code"), _ts("created_at"),
               _ts("last_updated")),
        _table("department", _int("department_id"), _text("department_name"),
               _text("location", True), _text("manager", True), _ts("created_at"),
               _ts("last_updated")),
        _table("design", _int("design_id"), _ts("created_at"), _text("design_name"),
               _text("file_location"), _text("file_name"), _ts("last_updated")),
        _table("staff", _int("staff_id"), _text("first_name"), _text("last_name"),
               _int("department_id"), _text("email_address"), _ts("created_at"),
               _ts("last_updated")),
        _table("sales_order", _int("sales_order_id"), _ts("created_at"), _ts("last_updated"),
               _int("design_id"), _int("staff_id"), _int("counterparty_id"), _int("units_sold"),
               Column("unit_price", "numeric"), _int("currency_id"),
               _text("agreed_delivery_date"), _text("agreed_payment_date"),
               _int("agreed_delivery_location_id")),
        _table("address", _int("address_id"), _text("address_line_1"),
               _text("address_line_2", True), _text("district", True), _text("city"),
               _text("postal_code"), _text("country"), _text("phone"), _ts("created_at"),
               _ts("last_updated")),
        _table("payment", _int("payment_id"), _ts("created_at"), _ts("last_updated"),
               _int("transaction_id"), _int("counterparty_id"), Column("payment_amount", "numeric"),
               _int("currency_id"), _int("payment_type_id"), Column("paid", "bool"),
               _text("payment_date"), _int("company_ac_number"), _int("counterparty_ac_number")),
        _table("purchase_order", _int("purchase_order_id"), _ts("created_at"),
               _ts("last_updated"), _int("staff_id"), _int("counterparty_id"), _text("item_code"),
               _int("item_quantity"), Column("item_unit_price", "numeric"), _int("currency_id"),
               _text("agreed_delivery_date"), _text("agreed_payment_date"),
               _int("agreed_delivery_location_id")),
        _table("payment_type", _int("payment_type_id"), _text("payment_type_name"),
               _ts("created_at"), _ts("last_updated")),
        _table("transaction", _int("transaction_id"), _text("transaction_type"),
               _int("sales_order_id", True), _int("purchase_order_id", True), _ts("created_at"),
               _ts("last_updated")),
    )
}  # fmt: skip

ALL_TABLES: tuple[str, ...] = tuple(SOURCE_TABLES)


def select_tables(names: Iterable[str]) -> tuple[str, ...]:
    """Validate configured table names against the allow-list, keeping the canonical order."""
    requested = [name.strip() for name in names if name.strip()]
    unknown = [name for name in requested if name not in SOURCE_TABLES]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown)
        raise ConfigError(f"unknown table(s) {shown}: allowed are {', '.join(ALL_TABLES)}")
    return tuple(name for name in ALL_TABLES if name in requested)
