"""etl/tables.py restates spec/totesys_source.sql: every column of the 11 tables, in the
DDL's order, with its kind and nullability. This keeps the two equal without a database
(ingest's drift check compares names and types with a live source at run time)."""

from __future__ import annotations

import re

from etl.tables import SOURCE_TABLES
from tests.conftest import REPO_ROOT

CREATE = re.compile(r"^CREATE TABLE public\.(\w+) \((.*?)^\);", re.MULTILINE | re.DOTALL)
COLUMN = re.compile(r"^\s*(\w+)\s+(public\.\"\w+\"|\w+)(?:\(\d+(?:,\d+)?\))?([^,-]*)")
KINDS = {"serial": "int", "integer": "int", "text": "text", "character": "text",
         "numeric": "numeric", "boolean": "bool", "timestamp": "timestamp"}  # fmt: skip


def spec_columns() -> dict[str, list[tuple[str, str, bool]]]:
    """Per table of the source DDL: (column, kind, nullable); an enum is read as text."""
    ddl = (REPO_ROOT / "spec" / "totesys_source.sql").read_text()
    tables = {}
    for name, body in CREATE.findall(ddl):
        matches = [COLUMN.match(line) for line in body.splitlines()]
        tables[name] = [
            (
                m[1],
                KINDS.get(m[2], "text" if m[2].startswith("public.") else m[2]),
                "NOT NULL" not in m[3],
            )
            for m in matches
            if m
        ]
    return tables


def test_the_allow_list_restates_the_source_ddl() -> None:
    declared = {
        table.name: [(c.name, c.kind, c.nullable) for c in table.columns]
        for table in SOURCE_TABLES.values()
    }
    assert spec_columns() == declared
