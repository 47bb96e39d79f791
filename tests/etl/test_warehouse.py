"""The warehouse declarations (etl/warehouse.py) are the one place a model is stated: these
tests say when spec/warehouse.sql or the model tables of spec/mapping.md disagree with them,
and that every declaration is whole (its key, sources and references exist)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from etl.names import WarehouseNames
from etl.tables import SOURCE_TABLES
from etl.warehouse import (
    CALENDAR,
    CURRENT,
    FACTS,
    FOREIGN_KEYS,
    VERSION,
    WAREHOUSE_TABLES,
    WarehouseTable,
    postgres_type,
)
from tests.conftest import REPO_ROOT

SPEC = REPO_ROOT / "spec"
# spec/warehouse.sql is variant V1 (spec/README.md): the purchases fact is singular there
SPEC_NAMES = WarehouseNames.parse("fact_purchase_orders=fact_purchase_order")
CREATE = re.compile(r"^CREATE TABLE (\w+) \((.*?)^\);", re.MULTILINE | re.DOTALL)
COLUMN = re.compile(r"^\s*(\w+)\s+(numeric\(\d+, \d+\)|\w+)\s*([^,-]*)")
REFERENCE = re.compile(
    r"^ALTER TABLE (\w+) ADD CONSTRAINT \w+\s+FOREIGN KEY \((\w+)\)\s+REFERENCES (\w+) \((\w+)\);",
    re.MULTILINE,
)
MODELS = "<!-- models:"


def spec_ddl() -> str:
    return (SPEC / "warehouse.sql").read_text()


def spec_tables() -> dict[str, list[tuple[str, str, str]]]:
    """Per CREATE TABLE of spec/warehouse.sql: (column, type, constraints) in order."""
    tables = {}
    for name, body in CREATE.findall(spec_ddl()):
        columns = [COLUMN.match(line) for line in body.splitlines()]
        tables[name] = [(m[1], m[2], " ".join(m[3].split())) for m in columns if m]
    return tables


def declared_columns(table: WarehouseTable) -> list[tuple[str, str, str]]:
    """What spec/warehouse.sql should say of a table, from its declaration alone."""
    columns = [(table.surrogate, "SERIAL", "PRIMARY KEY")] if table.surrogate else []
    for field in table.schema:
        if table.kind == "dim" and (field.name,) == table.key:
            constraint = "PRIMARY KEY NOT NULL"
        else:
            constraint = "" if field.nullable else "NOT NULL"
        columns.append((field.name, postgres_type(table.name, field), constraint))
    return columns


def test_spec_warehouse_sql_creates_exactly_the_declared_tables() -> None:
    found = spec_tables()
    assert sorted(found) == sorted(SPEC_NAMES.table(name) for name in WAREHOUSE_TABLES)
    for name, table in WAREHOUSE_TABLES.items():
        assert found[SPEC_NAMES.table(name)] == declared_columns(table), name


def test_spec_warehouse_sql_has_exactly_the_declared_foreign_keys() -> None:
    found = {(f, c, d, k) for f, c, d, k in REFERENCE.findall(spec_ddl())}
    declared = {(SPEC_NAMES.table(f), c, SPEC_NAMES.table(d), k) for f, c, d, k in FOREIGN_KEYS}
    assert found == declared
    assert len(FOREIGN_KEYS) == len(declared) == 24


def test_the_ddl_reader_sees_a_changed_column() -> None:
    """The comparison above can fail: a column whose nullability differs is seen."""
    staff = WAREHOUSE_TABLES["dim_staff"]
    loosened = staff.schema.set(1, staff.schema.field(1).with_nullable(True))
    changed = WarehouseTable(staff.name, staff.grain, staff.key, loosened, staff.builder)
    assert declared_columns(changed) != spec_tables()["dim_staff"]


@dataclass(frozen=True)
class MappingRow:
    """One row of a model table in spec/mapping.md: the names each cell states."""

    table: str
    grain: list[str]
    sources: list[str]
    columns: list[str]


def names_outside_parentheses(cell: str) -> list[str]:
    """The `quoted` names of a cell, leaving out any inside (...), which only explain."""
    depth, kept = 0, []
    for char in cell:
        depth += char == "("
        if depth == 0:
            kept.append(char)
        depth -= char == ")"
    return re.findall(r"`(\w+)`", "".join(kept))


def mapping_rows() -> list[MappingRow]:
    """The rows of every table that follows a `models` marker in spec/mapping.md."""
    lines = (SPEC / "mapping.md").read_text().splitlines()
    rows = []
    for start in (i for i, line in enumerate(lines) if line.startswith(MODELS)):
        table = []
        for line in lines[start + 2 :]:
            if not line.startswith("|"):
                break
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        header, _rule, *body = table
        assert header == ["warehouse table", "grain", "sources", "columns, in order"]
        for cells in body:
            (name,), grain, sources, columns = (names_outside_parentheses(c) for c in cells)
            rows.append(MappingRow(name, grain, sources, columns))
    return rows


def test_spec_mapping_has_one_row_per_declared_table() -> None:
    assert sorted(row.table for row in mapping_rows()) == sorted(WAREHOUSE_TABLES)


@pytest.mark.parametrize("row", mapping_rows(), ids=lambda row: row.table)
def test_spec_mapping_row_agrees_with_the_declaration(row: MappingRow) -> None:
    table = WAREHOUSE_TABLES[row.table]
    assert row.columns == list(table.columns), "columns, in order"
    assert row.grain == list(table.key), "the grain names the key"
    assert [name for name in row.sources if name in SOURCE_TABLES] == [
        source.table for source in table.sources
    ], "the sources, own first"
    assert {parent.via for parent in table.parents} <= set(row.sources), "joined on"


def test_every_declaration_is_whole() -> None:
    for table in WAREHOUSE_TABLES.values():
        assert set(table.key) <= set(table.columns), table.name
        assert table.grain in (CURRENT, VERSION, CALENDAR), table.name
        assert (table.grain == CALENDAR) == (not table.sources), table.name
        if table.sources:  # the own source joined on its id, each parent on a column of it
            own = SOURCE_TABLES[table.sources[0].table]
            assert table.sources[0].via == own.primary_key, table.name
            assert all(p.via in own.column_names for p in table.parents), table.name
        for column, dimension in table.references:
            assert column in table.columns and WAREHOUSE_TABLES[dimension].kind == "dim"
    for fact in FACTS:
        assert fact.grain == VERSION and fact.row_wise and fact.surrogate, fact.name
        assert fact.key == (fact.columns[0], "last_updated_date", "last_updated_time")
