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
from collections.abc import Iterator
from typing import cast

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from etl.drift import column_drift
from etl.errors import SchemaDriftError
from etl.tables import Column, SourceTable

TIMESTAMP_FORMAT = "YYYY-MM-DD HH24:MI:SS.MS"
COPY_OPTIONS = sql.SQL("(FORMAT csv, HEADER true, FORCE_QUOTE *, ENCODING 'UTF8')")

BLOCK_SIZE = 4 * 1024 * 1024  # bytes of CSV parsed at a time
HEADER_PEEK = 64 * 1024  # the header row is far shorter

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
    """Parse one whole extract into a typed table (small tables, tests)."""
    return pa.concat_tables(iter_extract(cast(io.RawIOBase, io.BytesIO(data)), table, source))


def iter_extract(
    stream: io.RawIOBase, table: SourceTable, source: str, block_size: int = BLOCK_SIZE
) -> Iterator[pa.Table]:
    """Parse one extract block by block (memory: one block, whatever the file's size). The
    header is checked before any row; drift in header or values names table and column.
    Always yields at least one (possibly empty) table."""
    buffered = io.BufferedReader(stream, buffer_size=max(block_size, HEADER_PEEK))
    try:
        yield from _parse_blocks(buffered, table, source, block_size)
    finally:  # the caller owns `stream`: the wrapper must not close it when collected
        buffered.detach()


def _parse_blocks(
    buffered: io.BufferedReader, table: SourceTable, source: str, block_size: int
) -> Iterator[pa.Table]:
    _check_header(_header(buffered.peek(HEADER_PEEK)), table, source)
    types = {column.name: ARROW_TYPES[column.kind] for column in table.columns}
    try:
        reader = pacsv.open_csv(
            buffered,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block_size),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
        empty = True
        for batch in reader:
            parsed = pa.Table.from_batches([batch])
            _check_not_null(parsed, table, source)
            empty = False
            yield parsed
        if empty:
            yield reader.schema.empty_table()
    except pa.ArrowInvalid as error:
        raise SchemaDriftError(f"{table.name}: {_arrow_detail(error, table)} in {source}") from None


def _check_header(header: list[str], table: SourceTable, source: str) -> None:
    detail = column_drift(list(table.column_names), header)
    if detail:
        raise SchemaDriftError(f"{table.name}: {detail} in {source}")


def _check_not_null(parsed: pa.Table, table: SourceTable, source: str) -> None:
    for column in table.columns:
        if not column.nullable and parsed.column(column.name).null_count:
            raise SchemaDriftError(
                f"{table.name}.{column.name}: NULL in a NOT NULL column in {source}"
            )


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
