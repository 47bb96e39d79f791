"""reconcile against a real source and warehouse: silent when they agree, precise when not."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.ops.cycle import run_cycle
from etl.ops.reconcile import Reconciliation, reconcile
from etl.storage import ObjectStore
from simulator.simulate import SimulationPlan, simulate
from tests.etl.test_main import env_for, run_etl


def url(secret: Any) -> str:
    return str(secret.reveal())


@pytest.fixture
def loaded(settings: Settings, s3: Any) -> Settings:
    """A warehouse that holds two cycles: the first load and one simulated day after it."""
    init_warehouse(settings)
    run_cycle(settings, s3)
    simulate(url(settings.totesys_db_url), SimulationPlan(days=1, seed=7))
    run_cycle(settings, s3)
    return settings


def check(settings: Settings, s3: Any) -> Reconciliation:
    return reconcile(
        settings,
        ObjectStore(s3, settings.ingestion_bucket),
        ObjectStore(s3, settings.processed_bucket),
    )


def by_table(result: Reconciliation) -> dict[str, Any]:
    return {c.table: c for c in result.checks}


def test_a_correct_warehouse_reconciles_on_every_table(loaded: Settings, s3: Any) -> None:
    result = check(loaded, s3)

    assert result.ok, [c.describe() for c in result.checks]
    assert len(result.checks) == 11
    tables = by_table(result)
    assert tables["fact_sales_order"].source_rows > 0
    assert tables["dim_transaction"].source_rows == tables["dim_transaction"].warehouse_rows > 0


def test_changes_after_the_last_load_are_left_out_not_reported(loaded: Settings, s3: Any) -> None:
    source = url(loaded.totesys_db_url)
    simulate(source, SimulationPlan(days=2, seed=8, edits_per_weekday=3))

    result = check(loaded, s3)

    assert result.ok, [c.describe() for c in result.checks]
    assert "left out" in by_table(result)["fact_payment"].note


def warehouse(settings: Settings) -> psycopg.Connection[Any]:
    return psycopg.connect(url(settings.warehouse_db_url), autocommit=True)


def test_a_dimension_value_changed_by_hand_is_named(loaded: Settings, s3: Any) -> None:
    with warehouse(loaded) as conn:
        (location,) = conn.execute("SELECT min(location_id) FROM dim_location").fetchone()  # type: ignore[misc]
        conn.execute("UPDATE dim_location SET city = 'Nowhere' WHERE location_id = %s", (location,))
        conn.execute("INSERT INTO dim_payment_type VALUES (99, 'BARTER')")

    result = check(loaded, s3)

    assert result.differing == ["dim_location", "dim_payment_type"]
    tables = by_table(result)
    assert tables["dim_location"].changed == [location]
    assert tables["dim_payment_type"].extra == [99]
    assert f"changed ids {location}" in tables["dim_location"].describe()


def test_a_deleted_or_duplicated_fact_version_is_named(loaded: Settings, s3: Any) -> None:
    with warehouse(loaded) as conn:
        # the newest version of an order with history, and a duplicate of a payment version
        (order,) = conn.execute(
            "SELECT sales_order_id FROM fact_sales_order GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            "DELETE FROM fact_sales_order WHERE sales_order_id = %s AND "
            "(last_updated_date + last_updated_time) = (SELECT max(last_updated_date + "
            "last_updated_time) FROM fact_sales_order WHERE sales_order_id = %s)",
            (order, order),
        )
        conn.execute("DROP INDEX fact_payment_version_key")
        (payment,) = conn.execute("SELECT min(payment_id) FROM fact_payment").fetchone()  # type: ignore[misc]
        conn.execute(
            "INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date,"
            " last_updated_time, transaction_id, counterparty_id, payment_amount, currency_id,"
            " payment_type_id, paid, payment_date) SELECT payment_id, created_date, created_time,"
            " last_updated_date, last_updated_time, transaction_id, counterparty_id, payment_amount,"
            " currency_id, payment_type_id, paid, payment_date FROM fact_payment"
            " WHERE payment_id = %s LIMIT 1",
            (payment,),
        )

    result = check(loaded, s3)

    assert result.differing == ["fact_sales_order", "fact_payment"]
    tables = by_table(result)
    assert tables["fact_sales_order"].missing == [order]
    assert tables["fact_payment"].duplicated == [payment]


def test_the_cli_exits_1_naming_each_differing_table(loaded: Settings, stack: Any) -> None:
    env = env_for(stack, loaded)
    healthy = run_etl(env, "reconcile")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.count(": ok (") == 11

    with warehouse(loaded) as conn:
        conn.execute("UPDATE dim_design SET design_name = 'Forged' WHERE design_id = 1")

    broken = run_etl(env, "reconcile")
    assert broken.returncode == 1
    assert "dim_design: DIFFERS" in broken.stdout
    assert broken.stderr.strip().startswith(
        "error: the warehouse differs from the source in dim_design;"
        " `python -m etl replay --tables dim_design`"
    )
