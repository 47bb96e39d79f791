"""The warehouse as the loader sees it: names resolved, DDL for a new one, and the
start-up check that a prepared one has every column we will write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from etl.errors import SchemaDriftError
from etl.names import WarehouseNames
from etl.warehouse import FOREIGN_KEYS, WAREHOUSE_TABLES, WarehouseTable, postgres_type

Connection = psycopg.Connection[tuple[Any, ...]]

# information_schema.columns.data_type for each of our PostgreSQL types
_COMPATIBLE = {
    "int": {"integer", "bigint"},
    "varchar": {"character varying", "text"},
    "date": {"date"},
    "time": {"time without time zone"},
    "boolean": {"boolean"},
    "numeric": {"numeric"},
    "numeric(10, 2)": {"numeric"},
}


@dataclass(frozen=True)
class Target:
    """Where a canonical warehouse table lives in this warehouse, and how its columns are called."""

    schema: str
    names: WarehouseNames

    def table(self, canonical: str) -> sql.Identifier:
        return sql.Identifier(self.schema, self.names.table(canonical))

    def column(self, canonical_table: str, canonical_column: str) -> sql.Identifier:
        return sql.Identifier(self.names.column(canonical_table, canonical_column))

    def columns(self, table: WarehouseTable, names: tuple[str, ...] | None = None) -> sql.Composed:
        return sql.SQL(", ").join(self.column(table.name, c) for c in (names or table.columns))

    def version_index_ddl(self, table: WarehouseTable) -> sql.Composed:
        """The unique index that makes fact versions unique and the dedupe probe an index scan."""
        index = sql.Identifier(f"{self.names.table(table.name)}_version_key")
        return sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
            index, self.table(table.name), self.columns(table, table.key)
        )

    def create_ddl(self) -> list[sql.Composed]:
        """spec/warehouse.sql for this naming: tables, keys, foreign keys, version indexes."""
        statements = []
        for table in WAREHOUSE_TABLES.values():
            columns = []
            if table.surrogate:
                columns.append(
                    sql.SQL("{} SERIAL PRIMARY KEY").format(sql.Identifier(table.surrogate))
                )
            for field in table.schema:
                columns.append(
                    sql.SQL("{} {}{}{}").format(
                        self.column(table.name, field.name),
                        sql.SQL(postgres_type(table.name, field)),
                        sql.SQL(" PRIMARY KEY")
                        if table.kind == "dim" and (field.name,) == table.key
                        else sql.SQL(""),
                        sql.SQL("") if field.nullable else sql.SQL(" NOT NULL"),
                    )
                )
            statements.append(
                sql.SQL("CREATE TABLE {} ({})").format(
                    self.table(table.name), sql.SQL(", ").join(columns)
                )
            )
        for fact, column, dim, key in FOREIGN_KEYS:
            statements.append(
                sql.SQL("ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({})").format(
                    self.table(fact),
                    self.column(fact, column),
                    self.table(dim),
                    self.column(dim, key),
                )
            )
        statements += [
            self.version_index_ddl(t) for t in WAREHOUSE_TABLES.values() if t.kind == "fact"
        ]
        return statements

    def existing_tables(self, conn: Connection) -> set[str]:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name = ANY(%s)",
            (self.schema, [self.names.table(t) for t in WAREHOUSE_TABLES]),
        ).fetchall()
        return {row[0] for row in rows}

    def check(self, conn: Connection) -> list[str]:
        """Fail before touching data if a table or column we write is missing or of another
        type, or the target has a NOT NULL column we would not fill. Returns warnings."""
        found: dict[str, dict[str, tuple[str, bool, bool]]] = {}
        rows = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES', column_default IS NOT NULL"
            " FROM information_schema.columns WHERE table_schema = %s",
            (self.schema,),
        ).fetchall()
        for table_name, column, data_type, nullable, has_default in rows:
            found.setdefault(table_name, {})[column] = (data_type, nullable, has_default)
        problems: list[str] = []
        for table in WAREHOUSE_TABLES.values():
            name = self.names.table(table.name)
            if name not in found:
                problems.append(f"table {self.schema}.{name} does not exist")
                continue
            written = set()
            for field in table.schema:
                column = self.names.column(table.name, field.name)
                written.add(column)
                if column not in found[name]:
                    problems.append(f"{name}.{column} does not exist")
                elif found[name][column][0] not in _COMPATIBLE[postgres_type(table.name, field)]:
                    problems.append(
                        f"{name}.{column} is {found[name][column][0]}, expected {postgres_type(table.name, field)}"
                    )
            for column, (_, nullable, has_default) in found[name].items():
                if column not in written and not nullable and not has_default:
                    problems.append(
                        f"{name}.{column} is NOT NULL without a default and we do not write it"
                    )
        if problems:
            hint = (
                " (map names with WAREHOUSE_NAME_MAP, or run init-warehouse on an empty database)"
            )
            raise SchemaDriftError("warehouse does not match: " + "; ".join(problems) + hint)
        return [
            f"{self.names.table(t.name)} has no unique index on its version key; dedupe will be slow"
            for t in WAREHOUSE_TABLES.values()
            if t.kind == "fact" and not self._has_version_index(conn, t)
        ]

    def _has_version_index(self, conn: Connection, table: WarehouseTable) -> bool:
        wanted = [self.names.column(table.name, c) for c in table.key]
        rows = conn.execute(
            """SELECT array_agg(a.attname ORDER BY k.ord)
               FROM pg_index i
               JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = %s::regclass AND i.indisunique
               GROUP BY i.indexrelid""",
            (self.table(table.name).as_string(conn),),
        ).fetchall()
        return any(list(row[0]) == wanted for row in rows)
