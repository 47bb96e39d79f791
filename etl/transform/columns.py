"""Column conversions shared by the table builders, and the final conform step."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from etl.errors import DataError
from etl.warehouse import TIME, WarehouseTable


def date_part(timestamps: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(timestamps, pa.date32())


def time_part(timestamps: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(timestamps, TIME)


def text_date(values: pa.ChunkedArray, table: str, column: str) -> pa.ChunkedArray:
    """'YYYY-MM-DD' text to a date; an impossible date names table and column."""
    try:
        return pc.cast(values, pa.date32())
    except pa.ArrowInvalid as error:
        raise DataError(f"{table}.{column}: {str(error).splitlines()[0]}") from None


def conform(columns: dict[str, pa.ChunkedArray | pa.Array], target: WarehouseTable) -> pa.Table:
    """Exactly the target's columns, order and types; NULL where the warehouse forbids it is
    an error naming the column (and the first offending key)."""
    arrays = []
    for field in target.schema:
        values = columns[field.name]
        try:
            values = pc.cast(values, field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DataError(f"{target.name}.{field.name}: {str(error).splitlines()[0]}") from None
        if not field.nullable and values.null_count:
            key = columns[target.key[0]]
            first = key.filter(pc.is_null(values))[0].as_py()
            raise DataError(
                f"{target.name}.{field.name} is NULL for {target.key[0]} {first}; the warehouse requires a value"
            )
        arrays.append(values)
    return pa.Table.from_arrays(arrays, schema=target.schema)
