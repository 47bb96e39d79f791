"""Table and column names of a prepared warehouse that differ from our canonical ones.

Configured as `WAREHOUSE_NAME_MAP`, comma-separated `canonical=target` pairs, where
canonical is a table (`fact_purchase_orders=fact_purchase_order`) or a table's column
(`dim_counterparty.counterparty_legal_address_line_2=counterparty_legal_address_line2`).
Every name is checked against the contract and must be a plain identifier; names reach SQL
only through `psycopg.sql.Identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from etl.errors import ConfigError
from etl.warehouse import WAREHOUSE_TABLES

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class WarehouseNames:
    tables: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def table(self, canonical: str) -> str:
        return self.tables.get(canonical, canonical)

    def column(self, table: str, canonical: str) -> str:
        return self.columns.get((table, canonical), canonical)

    @classmethod
    def parse(cls, text: str) -> WarehouseNames:
        tables: dict[str, str] = {}
        columns: dict[tuple[str, str], str] = {}
        for pair in filter(None, (part.strip() for part in text.split(","))):
            canonical, sep, target = (side.strip() for side in pair.partition("="))
            if not sep or not IDENTIFIER.match(target):
                raise ConfigError(
                    f"WAREHOUSE_NAME_MAP: {pair!r} is not canonical=target with a plain identifier"
                )
            table, dot, column = canonical.partition(".")
            if table not in WAREHOUSE_TABLES:
                raise ConfigError(f"WAREHOUSE_NAME_MAP: {table!r} is not a warehouse table")
            if dot and column not in WAREHOUSE_TABLES[table].columns:
                raise ConfigError(f"WAREHOUSE_NAME_MAP: {table} has no column {column!r}")
            if dot:
                columns[(table, column)] = target
            else:
                tables[table] = target
        return cls(tables, columns)
