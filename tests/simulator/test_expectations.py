"""The SQL expectation covers every declared warehouse table and takes its column lists from
the declarations, refusing an expression for a column the declaration lacks."""

from __future__ import annotations

import pytest

from etl.warehouse import WAREHOUSE_TABLES
from simulator.expectations import DIMENSIONS_SQL, FACTS_SQL, select


def test_every_warehouse_table_has_an_expectation() -> None:
    assert sorted([*DIMENSIONS_SQL, *FACTS_SQL, "dim_date"]) == sorted(WAREHOUSE_TABLES)


def test_the_columns_come_in_the_declared_order() -> None:
    assert select("dim_design", "design") == (
        "SELECT design_id, design_name, file_location, file_name FROM design"
    )
    assert select("dim_location", "address", {"location_id": "address_id"}, "city <> ''") == (
        "SELECT address_id, address_line_1, address_line_2, district, city, postal_code, "
        "country, phone FROM address WHERE city <> ''"
    )


def test_an_expression_for_an_undeclared_column_is_refused() -> None:
    with pytest.raises(ValueError, match="dim_design declares no column colour"):
        select("dim_design", "design", {"colour": "'red'"})
