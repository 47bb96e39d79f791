"""dim_date: one row per calendar date that any fact in the batch references."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.columns import conform
from etl.warehouse import WAREHOUSE_TABLES


def dim_date(dates: Iterable[pa.ChunkedArray | pa.Array]) -> pa.Table:
    """Grain: one row per distinct date. day_of_week is ISO (Monday=1); names are English."""
    chunks = [chunk for values in dates for chunk in _chunks(values)]
    if not chunks:
        return WAREHOUSE_TABLES["dim_date"].schema.empty_table()
    distinct = pc.unique(pa.chunked_array(chunks, pa.date32()).drop_null())
    days = pc.sort_indices(distinct)
    date_id = distinct.take(days)
    moments = pc.cast(date_id, pa.timestamp("s"))
    return conform(
        {
            "date_id": date_id,
            "year": pc.year(moments),
            "month": pc.month(moments),
            "day": pc.day(moments),
            "day_of_week": pc.day_of_week(moments, count_from_zero=False, week_start=1),
            "day_name": pc.strftime(moments, format="%A", locale="C"),
            "month_name": pc.strftime(moments, format="%B", locale="C"),
            "quarter": pc.quarter(moments),
        },
        WAREHOUSE_TABLES["dim_date"],
    )


def _chunks(values: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]
