"""The ingestion CSV format, both directions, in one place.

Written by PostgreSQL itself (`COPY ... TO STDOUT`, streamed): a header row, RFC 4180
quoting with every non-NULL value quoted, so NULL is an empty unquoted field and the empty
string is `""`. Timestamps carry exactly three fractional digits; numerics are written in
full, so values round-trip exactly. Read back with pyarrow, which keeps that NULL/''
distinction (`quoted_strings_can_be_null=False`) and checks the header against the contract.
"""

from __future__ import annotations

import io
import re

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from etl.errors import SchemaDriftError
from etl.tables import Column, SourceTable

TIMESTAMP_FORMAT = "YYYY-MM-DD HH24:MI:SS.MS"
COPY_OPTIONS = sql.SQL("(FORMAT csv, HEADER true, FORCE_QUOTE *, ENCODING 'UTF8')")

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "text": pa.string(),
    "numeric": pa.decimal128(12, 2),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms"),
}


def select_expression(column: Column) -> sql.Composable:
    """How a column is selected for the CSV: timestamps at a fixed millisecond format."""
    name = sql.Identifier(column.name)
    if column.kind == "timestamp":
        return sql.SQL("to_char({}, {}) AS {}").format(name, sql.Literal(TIMESTAMP_FORMAT), name)
    return name


def read_extract(data: bytes, table: SourceTable, source: str) -> pa.Table:
    """Parse one extract into a typed table; drift in header or values names table and column."""
    header = _header(data)
    expected = list(table.column_names)
    if header != expected:
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        detail = "; ".join(
            part
            for part in (
                f"missing column(s) {', '.join(missing)}" if missing else "",
                f"unexpected column(s) {', '.join(extra)}" if extra else "",
                "columns out of order" if not missing and not extra else "",
            )
            if part
        )
        raise SchemaDriftError(f"{table.name}: {detail} in {source}")
    types = {column.name: ARROW_TYPES[column.kind] for column in table.columns}
    try:
        parsed = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
    except pa.ArrowInvalid as error:
        raise SchemaDriftError(f"{table.name}: {_arrow_detail(error, table)} in {source}") from None
    for column in table.columns:
        if not column.nullable and parsed.column(column.name).null_count:
            raise SchemaDriftError(
                f"{table.name}.{column.name}: NULL in a NOT NULL column in {source}"
            )
    return parsed


def _header(data: bytes) -> list[str]:
    first_line = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    return [name.strip('"') for name in first_line.split(",")] if first_line else []


def _arrow_detail(error: pa.ArrowInvalid, table: SourceTable) -> str:
    """pyarrow names columns by position; name them by the contract instead."""
    text = str(error).splitlines()[0]
    match = re.match(r"In CSV column #(\d+): (.*)", text)
    if match and int(match.group(1)) < len(table.columns):
        return f"column {table.columns[int(match.group(1))].name}: {match.group(2)}"
    return text
