"""The allow-list is the only way a table name reaches SQL."""

from __future__ import annotations

import pytest

from etl.errors import ConfigError
from etl.tables import ALL_TABLES, SOURCE_TABLES, select_tables
from simulator.schema import TABLES as SIMULATED_TABLES


def test_all_eleven_source_tables_are_allowed() -> None:
    assert set(ALL_TABLES) == set(SIMULATED_TABLES)
    assert len(ALL_TABLES) == 11


def test_subset_keeps_canonical_order_and_ignores_blanks() -> None:
    assert select_tables(["payment", " currency", ""]) == ("currency", "payment")


@pytest.mark.parametrize(
    "name",
    [
        "payment; DROP TABLE payment",
        'payment" --',
        "pg_catalog.pg_authid",
        "Payment",
        "_prisma_migrations",
    ],
)
def test_names_outside_the_allow_list_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown table"):
        select_tables(["currency", name])


def test_every_table_is_keyed_on_its_first_column_and_has_last_updated() -> None:
    for table in SOURCE_TABLES.values():
        assert table.primary_key == table.column_names[0] == f"{table.name}_id"
        assert "last_updated" in table.column_names
