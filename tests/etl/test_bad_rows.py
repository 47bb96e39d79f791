"""Bad source rows never stop the business: each is set aside with its reason, every other
change flows on, a corrected version loads, and facts that refer to a set-aside dimension
row wait for it instead of breaking a foreign key. End to end against the real services."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from devstack.stack import StackEndpoints
from etl import layout
from etl.config import Settings
from etl.errors import DataError
from etl.load import waiting
from etl.load.loader import connect_warehouse, init_warehouse, replay
from etl.manifests import processed as processed_manifest
from etl.ops.cycle import run_cycle
from etl.ops.freshness import check, set_aside_versions
from etl.ops.metrics import NoMetrics
from etl.ops.monitoring import monitored_freshness
from etl.storage import ObjectStore
from etl.transform.batch import open_rejects, transform_pending
from etl.warehouse import WAREHOUSE_TABLES
from simulator.expectations import Row
from tests.etl.load.test_loader import assert_warehouse_matches, run_and_expect, source
from tests.etl.test_main import env_for, run_etl


def poison_sales_order(url: str, value: str = "2024-02-30") -> int:
    """Give one sales order an impossible agreed delivery date, as a new version."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = %s, last_updated = now()::timestamp(3)"
            " WHERE sales_order_id = (SELECT min(sales_order_id) FROM sales_order)"
            " RETURNING sales_order_id",
            (value,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def edit_another_order(url: str, poisoned: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now()::timestamp(3)"
            " WHERE sales_order_id = (SELECT max(sales_order_id) FROM sales_order) RETURNING sales_order_id"
        ).fetchone()
    assert row is not None and row[0] != poisoned
    return int(row[0])


def loaded_versions(settings: Settings, sales_order_id: int) -> list[tuple[Any, ...]]:
    with connect_warehouse(settings) as conn:
        return conn.execute(
            "SELECT agreed_delivery_date, units_sold FROM fact_sales_order WHERE sales_order_id = %s"
            " ORDER BY last_updated_date, last_updated_time",
            (sales_order_id,),
        ).fetchall()


def newest_manifest(settings: Settings, s3: Any) -> processed_manifest.ProcessedManifest:
    store = ObjectStore(s3, settings.processed_bucket)
    key = list(store.keys(layout.MANIFEST_PREFIX))[-1]
    manifest = processed_manifest.read_key(store, key)
    assert manifest is not None
    return manifest


def test_a_poison_row_is_set_aside_the_rest_flows_and_its_correction_loads(
    stack: StackEndpoints, settings: Settings, s3: Any
) -> None:
    init_warehouse(settings)
    facts: dict[str, set[Row]] = {}
    run_and_expect(settings, s3, facts)
    url = source(settings)
    poisoned = poison_sales_order(url)
    edited = edit_another_order(url, poisoned)

    run_and_expect(settings, s3, facts)  # one bad row: the run still succeeds

    assert_warehouse_matches(settings, facts)  # every other change arrived
    assert len(loaded_versions(settings, poisoned)) == 1, "the impossible version is not loaded"
    assert len(loaded_versions(settings, edited)) == 2
    manifest = newest_manifest(settings, s3)
    assert processed_manifest.rejected_rows(manifest) == 1
    entry = manifest["rejects"]["fact_sales_order"]
    body = ObjectStore(s3, settings.processed_bucket).get_bytes(entry["file"])
    assert body is not None and entry["file"].startswith("rejects/fact_sales_order/year=")
    [aside] = pq.read_table(io.BytesIO(body)).to_pylist()  # a plain parquet file
    assert [aside[c] for c in ("table", "key", "column", "value")] == [
        "fact_sales_order", str(poisoned), "agreed_delivery_date", "2024-02-30"
    ]  # fmt: skip
    assert "Failed to parse string" in aside["reason"]

    status = run_etl(env_for(stack, settings), "status")
    assert status.returncode == 0, status.stderr
    assert "set aside: 1 row(s) open" in status.stdout
    assert f"fact_sales_order sales_order_id={poisoned}" in status.stdout
    compared = run_etl(env_for(stack, settings), "reconcile")  # counted apart, not a difference
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "fact_sales_order: ok (" in compared.stdout and "1 set aside left out" in compared.stdout

    full = run_cycle(settings, s3, full_refresh=True)  # re-reads the bad version: not new
    assert all(not r.manifest["rejects"] for r in full.transformed)
    assert open_rejects(ObjectStore(s3, settings.processed_bucket)).num_rows == 1

    with psycopg.connect(url) as conn:  # the source row corrected
        conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = '2024-03-01',"
            " last_updated = now()::timestamp(3) WHERE sales_order_id = %s",
            (poisoned,),
        )
    run_and_expect(settings, s3, facts)
    assert_warehouse_matches(settings, facts)
    assert [str(v[0]) for v in loaded_versions(settings, poisoned)][-1] == "2024-03-01"
    assert open_rejects(ObjectStore(s3, settings.processed_bucket)).num_rows == 0
    assert "set aside: none open" in run_etl(env_for(stack, settings), "status").stdout


def test_facts_wait_for_a_set_aside_dimension_row_and_load_with_it(
    stack: StackEndpoints, settings: Settings, s3: Any
) -> None:
    init_warehouse(settings)
    run_cycle(settings, s3)
    url = source(settings)
    with psycopg.connect(url) as conn:
        currency = conn.execute(
            "INSERT INTO currency (currency_code, created_at, last_updated)"
            " VALUES ('XYZ', now()::timestamp(3), now()::timestamp(3)) RETURNING currency_id"
        ).fetchone()[0]  # type: ignore[index]
        order = conn.execute(
            "UPDATE sales_order SET currency_id = %s, last_updated = now()::timestamp(3)"
            " WHERE sales_order_id = (SELECT min(sales_order_id) FROM sales_order)"
            " RETURNING sales_order_id",
            (currency,),
        ).fetchone()[0]  # type: ignore[index]

    cycle = run_cycle(settings, s3)

    [batch] = cycle.loaded
    assert batch.tables["fact_sales_order"]["waiting"] == 1
    with connect_warehouse(settings) as conn:
        assert waiting.counts(conn) == {"fact_sales_order": 1}
    status = run_etl(env_for(stack, settings), "status").stdout
    assert "dim_currency currency_id=" in status and "not an ISO 4217 currency code" in status
    assert "waiting for a dimension row (load them with it): fact_sales_order=1" in status
    assert len(loaded_versions(settings, order)) == 1

    again = run_cycle(settings, s3).loaded  # tried again with the next batch: still waiting
    assert [b.tables.get("fact_sales_order", {}).get("waiting") for b in again] == [1] * len(again)
    replay(settings, s3, tuple(WAREHOUSE_TABLES))  # re-applies the batch it came in: not twice
    strict = replace(settings, bad_row_policy="fail")
    run_cycle(strict, s3)  # a change of policy: what waited keeps waiting, nothing blocks
    with connect_warehouse(settings) as conn:
        assert waiting.counts(conn) == {"fact_sales_order": 1}
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE currency SET currency_code = 'CHF', last_updated = now()::timestamp(3)"
            " WHERE currency_id = %s",
            (currency,),
        )
    cycle = run_cycle(strict, s3)  # loads under either policy once its dimension is there

    assert cycle.loaded[0].tables["fact_sales_order"]["retried"] == 1
    assert len(loaded_versions(settings, order)) == 2, "the waiting version loaded with it"
    with connect_warehouse(settings) as conn:
        assert waiting.counts(conn) == {}
        assert conn.execute(
            "SELECT currency_name FROM dim_currency WHERE currency_id = %s", (currency,)
        ).fetchone() == ("Swiss Franc",)


def test_a_set_aside_change_is_reported_apart_not_as_a_freshness_breach(
    settings: Settings, s3: Any
) -> None:
    init_warehouse(settings)
    run_cycle(settings, s3)
    with psycopg.connect(source(settings)) as conn:  # the newest change, and a bad one
        conn.execute(
            "UPDATE payment SET payment_date = '2024-13-01', last_updated = now()::timestamp(3)"
            " WHERE payment_id = (SELECT min(payment_id) FROM payment)"
        )
    run_cycle(settings, s3)
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=2)
    processed = ObjectStore(s3, settings.processed_bucket)

    assert check(settings, later, timedelta(minutes=30)).breached, "counted, it would alert"
    aside = set_aside_versions(settings, processed)
    assert len(aside["payment"][0]) == 1
    assert not check(settings, later, timedelta(minutes=30), aside).breached
    assert not monitored_freshness(settings, NoMetrics(), later, timedelta(minutes=30), s3).breached


def test_the_fail_policy_stops_the_batch_in_one_line(settings: Settings, s3: Any) -> None:
    strict = replace(settings, bad_row_policy="fail")
    init_warehouse(strict)
    run_cycle(strict, s3)
    poisoned = poison_sales_order(source(strict), "soon")
    with pytest.raises(
        DataError, match=rf"agreed_delivery_date: .*'soon'.*sales_order_id {poisoned}"
    ):
        run_cycle(strict, s3)


def test_a_batch_stuck_under_the_fail_policy_flows_with_a_normal_run(
    settings: Settings, s3: Any
) -> None:
    """As a batch an earlier release could not transform: stuck until the upgrade."""
    init_warehouse(settings)
    run_cycle(settings, s3)
    poison_sales_order(source(settings))
    with pytest.raises(DataError):
        run_cycle(replace(settings, bad_row_policy="fail"), s3)

    [result] = transform_pending(settings, s3)  # the upgraded release: no step but a run

    assert processed_manifest.rejected_rows(result.manifest) == 1
    assert run_cycle(settings, s3).loaded  # the stuck batch loads


def test_a_damaged_warehouse_is_replayed_until_reconcile_passes(
    stack: StackEndpoints, settings: Settings, s3: Any
) -> None:
    init_warehouse(settings)
    facts: dict[str, set[Row]] = {}
    run_and_expect(settings, s3, facts)
    with psycopg.connect(source(settings)) as conn:  # a second batch, so replay spans two
        conn.execute(
            "UPDATE payment SET payment_amount = payment_amount + 1,"
            " last_updated = now()::timestamp(3)"
            " WHERE payment_id IN (SELECT payment_id FROM payment ORDER BY payment_id LIMIT 3)"
        )
    run_and_expect(settings, s3, facts)
    with connect_warehouse(settings) as conn:  # damage by hand
        deleted = conn.execute(
            "DELETE FROM fact_payment WHERE payment_id IN"
            " (SELECT payment_id FROM fact_payment ORDER BY payment_id LIMIT 5)"
        ).rowcount
        conn.execute(
            "UPDATE dim_counterparty SET counterparty_legal_name = 'defaced'"
            " WHERE counterparty_id = (SELECT min(counterparty_id) FROM dim_counterparty)"
        )
    assert deleted >= 5
    env = env_for(stack, settings)

    before = run_etl(env, "reconcile")
    assert before.returncode == 1, before.stdout
    assert "dim_counterparty: DIFFERS" in before.stdout and "fact_payment: DIFFERS" in before.stdout
    assert "etl replay --tables dim_counterparty,fact_payment" in before.stderr

    replayed = run_etl(env, "replay", "--tables", "dim_counterparty,fact_payment")
    assert replayed.returncode == 0, replayed.stderr
    assert "2 loaded batch(es) applied again" in replayed.stdout

    after = run_etl(env, "reconcile")
    assert after.returncode == 0, after.stdout + after.stderr
    assert_warehouse_matches(settings, facts)
    again = run_etl(env, "replay", "--all")  # nothing left to apply: nothing duplicated
    assert again.returncode == 0, again.stderr
    assert "already as the batch has it" in again.stdout
    assert run_etl(env, "reconcile").returncode == 0
    unknown = run_etl(env, "replay", "--tables", "fact_nope")
    assert unknown.returncode != 0
    assert (
        unknown.stderr.count("\n") == 1 and "fact_nope is not a warehouse table" in unknown.stderr
    )
