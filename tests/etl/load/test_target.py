"""init-warehouse builds spec/warehouse.sql; prepared warehouses are checked, not touched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

from etl.config import Secret, Settings
from etl.errors import ConfigError, EtlError, SchemaDriftError
from etl.load.loader import init_warehouse
from etl.load.target import Target
from etl.names import WarehouseNames
from tests.conftest import REPO_ROOT
from tests.simulator.catalog import catalog

SPEC_DDL = REPO_ROOT / "spec" / "warehouse.sql"
SINGULAR = WarehouseNames.parse("fact_purchase_orders=fact_purchase_order")


def spec_warehouse(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(SPEC_DDL.read_bytes())


def on(settings: Settings, url: str, names: WarehouseNames | None = None) -> Settings:
    return replace(
        settings, warehouse_db_url=Secret(url), warehouse_names=names or WarehouseNames()
    )


def without_version_indexes(facts: dict) -> dict:  # type: ignore[type-arg]
    return {**facts, "indexes": [i for i in facts["indexes"] if not i[0].endswith("_version_key")]}


def test_init_builds_exactly_the_spec_ddl(
    settings: Settings, make_database: Callable[[str], str]
) -> None:
    reference, ours = make_database("wh_spec"), make_database("wh_init")
    spec_warehouse(reference)

    message = init_warehouse(on(settings, ours, SINGULAR))

    assert message.startswith("warehouse created")
    assert without_version_indexes(catalog(ours)) == catalog(reference)
    assert len([i for i in catalog(ours)["indexes"] if i[0].endswith("_version_key")]) == 3


def test_default_name_is_fact_purchase_orders(settings: Settings) -> None:
    init_warehouse(settings)
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        names = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert "fact_purchase_orders" in names and "fact_purchase_order" not in names
    assert len(names) == 11


def test_an_existing_prepared_warehouse_is_left_alone(
    settings: Settings, make_database: Callable[[str], str]
) -> None:
    url = make_database("wh_prepared")
    spec_warehouse(url)
    before = catalog(url)

    message = init_warehouse(on(settings, url, SINGULAR))

    assert message == "warehouse already has its 11 tables; left as it is"
    assert catalog(url) == before


def test_a_partial_warehouse_is_refused(settings: Settings) -> None:
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        conn.execute("CREATE TABLE dim_date (date_id date PRIMARY KEY)")
    with pytest.raises(EtlError, match="warehouse is partly there"):
        init_warehouse(settings)


def test_check_names_every_mismatch(
    settings: Settings, make_database: Callable[[str], str]
) -> None:
    url = make_database("wh_variant")
    spec_warehouse(url)
    with psycopg.connect(url) as conn:
        conn.execute(
            "ALTER TABLE dim_counterparty RENAME counterparty_legal_address_line_2 TO counterparty_legal_address_line2"
        )
        conn.execute("ALTER TABLE dim_staff ADD COLUMN hired date NOT NULL")
        conn.execute("ALTER TABLE dim_design ALTER COLUMN design_name TYPE int USING 0")
    target = Target("public", WarehouseNames())

    with psycopg.connect(url) as conn, pytest.raises(SchemaDriftError) as raised:
        target.check(conn)

    message = str(raised.value)
    assert "table public.fact_purchase_orders does not exist" in message
    assert "dim_counterparty.counterparty_legal_address_line_2 does not exist" in message
    assert "dim_staff.hired is NOT NULL without a default" in message
    assert "dim_design.design_name is integer, expected varchar" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("fact_purchase_orders=fact purchase", "not canonical=target with a plain identifier"),
        ('fact_purchase_orders=x";drop table y;--', "not canonical=target with a plain identifier"),
        ("fact_sales=x", "'fact_sales' is not a warehouse table"),
        ("dim_staff.colour=x", "dim_staff has no column 'colour'"),
    ],
)
def test_name_map_is_validated(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        WarehouseNames.parse(text)


def test_name_map_parses_tables_and_columns() -> None:
    names = WarehouseNames.parse(
        " fact_purchase_orders=fact_purchase_order, "
        "dim_counterparty.counterparty_legal_address_line_2=counterparty_legal_address_line2"
    )
    assert names.table("fact_purchase_orders") == "fact_purchase_order"
    assert names.table("dim_date") == "dim_date"
    assert (
        names.column("dim_counterparty", "counterparty_legal_address_line_2")
        == "counterparty_legal_address_line2"
    )
