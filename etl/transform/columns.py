"""Column conversions shared by the table builders, and the final conform step, where a
row that cannot become a warehouse row is set aside (etl.transform.rejects)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.rejects import Problem, RejectLog
from etl.warehouse import TIME, WarehouseTable

# The dates every reader holds: Python's (and so psycopg's and pandas' object dates) and
# PostgreSQL's date input both stop at these; Arrow alone would take year 0.
FIRST_DATE, LAST_DATE = date(1, 1, 1), date(9999, 12, 31)
NULL_REASON = "NULL, but the warehouse requires a value"
DATE_RANGE_REASON = f"a date outside {FIRST_DATE}..{LAST_DATE}"

Values: TypeAlias = pa.ChunkedArray | pa.Array


def date_part(timestamps: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(timestamps, pa.date32())


def time_part(timestamps: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(timestamps, TIME)


def conform(
    columns: dict[str, Values],
    target: WarehouseTable,
    rejects: RejectLog | None = None,
    problems: Sequence[Problem] = (),
) -> pa.Table:
    """Exactly the target's columns, order and types, for the rows that can be warehouse
    rows. A row with a `problem`, a value that does not convert to its column's type (an
    impossible date, text where a number belongs, a number too large), a date no reader
    holds, or a NULL where the warehouse requires a value goes to `rejects` (blaming the
    first column at fault); with no log, or under the `fail` policy, it raises DataError."""
    log = rejects or RejectLog()
    arrays = {name: _array(values) for name, values in columns.items()}
    key = target.key[0]
    failed = pa.repeat(False, len(arrays[key]))

    def set_aside(column: str, mask: pa.Array | None, reason: pa.Array | str) -> None:
        if mask is None:  # the column converted whole: nothing to look at
            return
        nonlocal failed
        new = pc.and_(mask, pc.invert(failed))
        log.add(target.name, key, arrays, column, new, reason)
        failed = pc.or_(failed, new)

    for problem in problems:
        set_aside(problem.column, problem.mask, problem.reason)
    converted = []
    for column in target.schema:
        values, unconvertible, reasons = _convert(arrays[column.name], column.type)
        set_aside(column.name, unconvertible, reasons)
        if pa.types.is_date32(column.type):
            set_aside(column.name, _outside_dates(values), DATE_RANGE_REASON)
        if not column.nullable:
            set_aside(column.name, pc.is_null(values), NULL_REASON)
        converted.append(values)
    table = pa.Table.from_arrays(converted, schema=target.schema)
    if failed.true_count:
        table = table.filter(pc.invert(failed))
    log.record_built(target.name, table.column(key))
    return table


def _array(values: Values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values


def _convert(values: pa.Array, to: pa.DataType) -> tuple[pa.Array, pa.Array | None, pa.Array | str]:
    """(values as `to`, NULL where they do not convert; which did not, None when all did;
    why). The whole column converts at once unless a value is bad: only then is it tried
    value by value."""
    n = len(values)
    try:
        return pc.cast(values, to), None, ""
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    bad, reasons = [], []
    for index in range(n):
        try:
            pc.cast(values.slice(index, 1), to)
            bad.append(False)
            reasons.append("")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            bad.append(True)
            reasons.append(str(error).splitlines()[0])
    mask = pa.array(bad, pa.bool_())
    kept = pc.if_else(mask, pa.nulls(n, values.type), values)
    return pc.cast(kept, to), mask, pa.array(reasons, pa.string())


def _outside_dates(values: pa.Array) -> pa.Array:
    low, high = pa.scalar(FIRST_DATE, pa.date32()), pa.scalar(LAST_DATE, pa.date32())
    outside = pc.or_(pc.less(values, low), pc.greater(values, high))
    return pc.fill_null(outside, False)
