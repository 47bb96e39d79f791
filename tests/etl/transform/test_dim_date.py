"""dim_date covers exactly the referenced dates with ISO weekdays and English names."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from etl.transform.dim_date import dim_date
from etl.warehouse import WAREHOUSE_TABLES


def test_one_row_per_distinct_date() -> None:
    out = dim_date([
        pa.array([date(2024, 11, 17), date(2024, 11, 18), None], pa.date32()),
        pa.chunked_array([[date(2024, 11, 18)], [date(2023, 1, 1)]], pa.date32()),
    ])  # fmt: skip
    assert out.schema == WAREHOUSE_TABLES["dim_date"].schema
    assert out.to_pylist() == [
        {"date_id": date(2023, 1, 1), "year": 2023, "month": 1, "day": 1, "day_of_week": 7,
         "day_name": "Sunday", "month_name": "January", "quarter": 1},
        {"date_id": date(2024, 11, 17), "year": 2024, "month": 11, "day": 17, "day_of_week": 7,
         "day_name": "Sunday", "month_name": "November", "quarter": 4},
        {"date_id": date(2024, 11, 18), "year": 2024, "month": 11, "day": 18, "day_of_week": 1,
         "day_name": "Monday", "month_name": "November", "quarter": 4},
    ]  # fmt: skip


def test_no_dates_no_rows() -> None:
    assert dim_date([]).num_rows == 0
