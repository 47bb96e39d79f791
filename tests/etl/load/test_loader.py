"""End to end on a simulated totesys: the warehouse equals the SQL-computed expectation,
every batch lands exactly once, and failures roll back and converge."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.config import Secret, Settings
from etl.errors import EtlError, SchemaDriftError
from etl.ingest.run import ingest
from etl.load.loader import init_warehouse, load_pending
from etl.names import WarehouseNames
from etl.ops.cycle import run_cycle
from etl.storage import ObjectStore
from etl.transform.batch import transform_pending
from simulator.expectations import Row, calendar, current_dimensions, current_fact_versions
from simulator.simulate import SimulationPlan, simulate
from tests.etl.load import warehouse_rows
from tests.etl.load.test_target import spec_warehouse
from tests.faults import InjectedCrash, crash_at


def source(settings: Settings) -> str:
    return settings.totesys_db_url.reveal()  # type: ignore[union-attr]


def run_and_expect(settings: Settings, s3: Any, facts: dict[str, set[Row]]) -> None:
    """One cycle; fold the source's current versions into the expected fact history."""
    run_cycle(settings, s3)
    for table, versions in current_fact_versions(source(settings)).items():
        facts.setdefault(table, set()).update(versions)


def assert_warehouse_matches(settings: Settings, facts: dict[str, set[Row]]) -> None:
    url = source(settings)
    for table, expected in current_dimensions(url).items():
        assert set(warehouse_rows.rows(settings, table)) == expected, table
    for table, expected in facts.items():
        loaded = warehouse_rows.rows(settings, table)
        assert len(loaded) == len(set(loaded)), f"{table} holds a version twice"
        assert set(loaded) == expected, table
    assert set(warehouse_rows.rows(settings, "dim_date")) == calendar(url, facts)


def edit_shared_address(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        address_id, counterparties = conn.execute(
            "SELECT legal_address_id, array_agg(counterparty_id ORDER BY counterparty_id) FROM counterparty"
            " GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            "UPDATE address SET address_line_1 = '9 Quay St', last_updated = now()::timestamp(3)"
            " WHERE address_id = %s",
            (address_id,),
        )
    return list(counterparties)


def test_runs_converge_on_the_sql_expectation_and_a_quiet_run_changes_nothing(
    settings: Settings, s3: Any
) -> None:
    init_warehouse(settings)
    facts: dict[str, set[Row]] = {}
    run_and_expect(settings, s3, facts)
    assert_warehouse_matches(settings, facts)
    loaded_before = {t: len(warehouse_rows.rows(settings, t)) for t in facts}

    simulate(source(settings), SimulationPlan(days=3, edits_per_weekday=4, seed=17))
    moved = edit_shared_address(source(settings))
    run_and_expect(settings, s3, facts)

    assert_warehouse_matches(settings, facts)
    gained = {t: len(warehouse_rows.rows(settings, t)) - loaded_before[t] for t in facts}
    assert all(n > 0 for n in gained.values()), gained
    on_new_address = [
        r[0] for r in warehouse_rows.rows(settings, "dim_counterparty") if r[2] == "9 Quay St"
    ]
    assert sorted(on_new_address) == moved

    before = warehouse_rows.digest(settings)
    run_cycle(settings, s3)
    assert warehouse_rows.digest(settings) == before, (
        "a run with no source change leaves it byte-identical"
    )


def test_replaying_batches_changes_nothing(settings: Settings, s3: Any) -> None:
    init_warehouse(settings)
    run_cycle(settings, s3)
    simulate(source(settings), SimulationPlan(days=2, seed=5))
    run_cycle(settings, s3)
    before = warehouse_rows.digest(settings)
    assert load_pending(settings, s3) == []

    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        conn.execute("DELETE FROM etl.load_ledger")
    replayed = load_pending(settings, s3)

    assert len(replayed) == 2
    assert all(c["inserted"] == c["updated"] == 0 for r in replayed for c in r.tables.values())
    assert warehouse_rows.digest(settings) == before


def test_a_load_killed_mid_transaction_rolls_back_and_the_rerun_converges(
    settings: Settings, s3: Any, make_database: Callable[[str], str]
) -> None:
    init_warehouse(settings)
    run_cycle(settings, s3)
    simulate(source(settings), SimulationPlan(days=2, edits_per_weekday=3, seed=8))
    before = (warehouse_rows.digest(settings), warehouse_rows.ledger(settings))

    with pytest.raises(InjectedCrash):
        run_cycle_with_hook(settings, s3, crash_at("table:fact_sales_order"))
    assert (warehouse_rows.digest(settings), warehouse_rows.ledger(settings)) == before

    load_pending(settings, s3)
    clean = replace(settings, warehouse_db_url=Secret(make_database("wh_clean")))
    init_warehouse(clean)
    load_pending(clean, s3)
    assert warehouse_rows.digest(settings, with_surrogates=False) == warehouse_rows.digest(
        clean, with_surrogates=False
    )
    assert [r[0] for r in warehouse_rows.ledger(settings)] == [
        r[0] for r in warehouse_rows.ledger(clean)
    ]


def run_cycle_with_hook(settings: Settings, s3: Any, hook: Callable[[str], None]) -> None:
    from etl.ingest.run import ingest
    from etl.transform.batch import transform_pending

    ingest(settings, s3)
    transform_pending(settings, s3)
    load_pending(settings, s3, on_step=hook)


def test_a_lost_connection_rolls_back_with_a_clear_error(settings: Settings, s3: Any) -> None:
    init_warehouse(settings)
    warehouse = settings.warehouse_db_url.reveal()  # type: ignore[union-attr]

    def kill_the_loaders_connection(step: str) -> None:
        if step == "table:dim_transaction":
            # the batch's session (inside its transaction), not the load lease's own
            with psycopg.connect(warehouse, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state = 'idle in transaction'"
                )

    with pytest.raises(
        EtlError, match=r"loading batch \S+ into fact_sales_order failed, rolled back: "
    ):
        run_cycle_with_hook(settings, s3, kill_the_loaders_connection)
    assert warehouse_rows.rows(settings, "dim_date") == []
    assert warehouse_rows.ledger(settings) == []

    [loaded] = load_pending(settings, s3)
    assert loaded.tables["fact_sales_order"]["inserted"] > 0


def test_a_constraint_violation_rolls_back_the_whole_batch(settings: Settings, s3: Any) -> None:
    init_warehouse(settings)
    run_cycle(settings, s3)
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        conn.execute(
            "ALTER TABLE fact_payment ADD CONSTRAINT small CHECK (payment_amount < 100) NOT VALID"
        )
    simulate(source(settings), SimulationPlan(days=2, seed=6))
    before = warehouse_rows.digest(settings)

    with pytest.raises(EtlError, match=r"into fact_payment failed, rolled back: .*\"small\""):
        run_cycle(settings, s3)
    assert warehouse_rows.digest(settings) == before

    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:  # type: ignore[union-attr]
        conn.execute("ALTER TABLE fact_payment DROP CONSTRAINT small")
    [retried] = load_pending(settings, s3)
    assert retried.tables["fact_payment"]["inserted"] > 0


def test_a_mismatched_prepared_warehouse_fails_before_writing_anything(
    settings: Settings, s3: Any, make_database: Callable[[str], str]
) -> None:
    url = make_database("wh_prepared")
    spec_warehouse(url)  # singular fact_purchase_order, as most prepared warehouses have it
    prepared = replace(settings, warehouse_db_url=Secret(url))

    with pytest.raises(SchemaDriftError, match="table public.fact_purchase_orders does not exist"):
        run_cycle(prepared, s3)
    assert all(warehouse_rows.rows(prepared, t) == [] for t in ("dim_date", "dim_staff"))

    mapped = replace(
        prepared, warehouse_names=WarehouseNames.parse("fact_purchase_orders=fact_purchase_order")
    )
    [loaded] = load_pending(mapped, s3)
    facts = current_fact_versions(source(settings))
    assert set(warehouse_rows.rows(mapped, "fact_purchase_orders")) == facts["fact_purchase_orders"]
    assert loaded.tables["fact_purchase_orders"]["inserted"] == len(facts["fact_purchase_orders"])


def rewrite_processed(
    s3: Any, bucket: str, manifest_key: str, table: str, edit: Callable[[pa.Table], pa.Table]
) -> str:
    """Replace a processed file with an edited copy and record its checksum in the manifest,
    as a transform that wrote the wrong shape would: only load's own check stands in the way."""
    store = ObjectStore(s3, bucket)
    manifest: dict[str, Any] = store.get_json(manifest_key) or {}
    entry = manifest["tables"][table]
    edited = edit(pq.read_table(io.BytesIO(store.get_bytes(entry["file"]) or b"")))
    buffer = io.BytesIO()
    pq.write_table(edited, buffer)
    written = store.put_bytes(entry["file"], buffer.getvalue())
    entry.update(bytes=written.bytes, sha256=written.sha256, columns=edited.column_names)
    store.put_json(manifest_key, manifest)
    return str(entry["file"])


def rename_paid(data: pa.Table) -> pa.Table:
    return data.rename_columns(["is_paid" if c == "paid" else c for c in data.column_names])


def swap_currency_and_payment_type(data: pa.Table) -> pa.Table:
    names = data.column_names
    i, j = names.index("currency_id"), names.index("payment_type_id")
    order = list(range(len(names)))
    order[i], order[j] = j, i
    return data.select(order)


def amount_as_float(data: pa.Table) -> pa.Table:
    index = data.column_names.index("payment_amount")
    return data.set_column(index, "payment_amount", data.column(index).cast(pa.float64()))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            rename_paid,
            r"fact_payment: missing column\(s\) paid; unexpected column\(s\) is_paid in s3://",
        ),
        (swap_currency_and_payment_type, r"fact_payment: columns out of order in s3://"),
        (
            amount_as_float,
            r"fact_payment\.payment_amount: type double, expected decimal128\(10, 2\)",
        ),
    ],
)
def test_a_processed_file_with_a_wrong_column_fails_naming_it_and_writes_nothing(
    settings: Settings, s3: Any, edit: Callable[[pa.Table], pa.Table], message: str
) -> None:
    # Found writing the bad-input checks: COPY matches columns by position, so a renamed,
    # swapped or retyped column loaded silently (a swap of two int columns even kept every
    # foreign key valid) or failed on some unrelated value.
    init_warehouse(settings)
    ingest(settings, s3)
    [batch] = transform_pending(settings, s3)
    rewrite_processed(s3, settings.processed_bucket, batch.manifest_key, "fact_payment", edit)

    with pytest.raises(SchemaDriftError, match=message):
        load_pending(settings, s3)

    assert warehouse_rows.ledger(settings) == []
    assert all(warehouse_rows.rows(settings, t) == [] for t in ("dim_date", "fact_payment"))
