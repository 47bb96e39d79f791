"""The simulator's schema is exactly the spec DDL of the real totesys database."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from simulator.schema import DDL_PATH, TABLES
from simulator.seed import SeedPlan, seed_totesys
from tests.simulator.catalog import catalog


def test_seeded_catalog_matches_spec_ddl_loaded_on_its_own(
    make_database: Callable[[str], str],
) -> None:
    reference = make_database("spec_ddl")
    with psycopg.connect(reference) as conn:
        conn.execute(DDL_PATH.read_bytes())
    seeded = make_database("seeded")
    seed_totesys(seeded, SeedPlan(scale=0.01))

    expected, actual = catalog(reference), catalog(seeded)

    assert actual == expected
    assert {row[0] for row in actual["columns"]} == set(TABLES)
    assert ("TransactionType", 1.0, "SALE") in actual["enums"]
    fks = [c for c in actual["constraints"] if "FOREIGN KEY" in c[2]]
    assert len(fks) == 17
    assert ("transaction", "transaction_sales_order_id_fkey",
            "FOREIGN KEY (sales_order_id) REFERENCES sales_order(sales_order_id) "
            "ON UPDATE CASCADE ON DELETE SET NULL") in fks  # fmt: skip
