"""The DAG run for real with `airflow dags test` against the local stack."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.airflow import DagTestRun, airflow_env, dags_test
from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from simulator.expectations import Row, calendar, current_dimensions, current_fact_versions
from simulator.seed import SeedPlan, seed_totesys
from simulator.simulate import SimulationPlan, simulate
from tests.etl.load import warehouse_rows

FORCE_LOAD = {"force_load": True}


def run_succeeded(run: DagTestRun) -> bool:
    return run.succeeded


@pytest.fixture(scope="module")
def seeded(airflow_stack: StackEndpoints) -> Settings:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.05), replace=True)
    settings = Settings.from_env(airflow_stack.as_env())
    init_warehouse(settings)
    return settings


def new_messages(stack: StackEndpoints, seen: int) -> list[Any]:
    return stack.messages()[seen:]


def test_runs_end_to_end_and_the_warehouse_equals_the_sql_expectation(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings
) -> None:
    env = airflow_env(airflow_stack, airflow_home)
    url = airflow_stack.totesys_db_url
    mails = len(airflow_stack.messages())

    first = dags_test(env, "2026-11-28T10:15:00+00:00", FORCE_LOAD)
    assert run_succeeded(first), first.output[-3000:]
    facts: dict[str, set[Row]] = current_fact_versions(url)
    simulate(url, SimulationPlan(days=2, edits_per_weekday=3, seed=12))
    second = dags_test(env, "2026-11-28T10:30:00+00:00", FORCE_LOAD)
    assert run_succeeded(second), second.output[-3000:]
    for table, rows in current_fact_versions(url).items():
        facts[table] |= rows

    for table, expected in current_dimensions(url).items():
        assert set(warehouse_rows.rows(seeded, table)) == expected, table
    for table, expected in facts.items():
        loaded = warehouse_rows.rows(seeded, table)
        assert len(loaded) == len(set(loaded)) and set(loaded) == expected, table
    assert set(warehouse_rows.rows(seeded, "dim_date")) == calendar(url, facts)
    assert new_messages(airflow_stack, mails) == [], "a healthy run sends no email"

    before = warehouse_rows.digest(seeded)
    replay = dags_test(env, "2026-11-28T10:15:00+00:00", FORCE_LOAD)
    assert run_succeeded(replay), "re-running a past interval succeeds"
    assert warehouse_rows.digest(seeded) == before, "and changes nothing"


def test_unreachable_source_fails_after_retries_with_one_email_per_failed_task(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings
) -> None:
    unreachable = json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres",
                              "password": "s3cret-never-shown", "schema": "totesys"})  # fmt: skip
    env = airflow_env(airflow_stack, airflow_home, {
        "AIRFLOW_CONN_TOTESYS_DB": unreachable,
        "AIRFLOW__TOTESYS__RETRIES": "1",
        "AIRFLOW__TOTESYS__RETRY_DELAY_SECONDS": "1",
    })  # fmt: skip
    mails = len(airflow_stack.messages())

    result = dags_test(env, "2026-11-28T11:00:00+00:00")

    assert "state=failed" in result.output
    sent = new_messages(airflow_stack, mails)
    assert [m["Subject"].split(" failed")[0] for m in sent] == ["[totesys] totesys_etl.ingest"]
    body = sent[0].get_body().get_content()
    for field in ("<td>DAG</td><td>totesys_etl", "<td>Task</td><td>ingest", "<td>Run</td><td>manual__",
                  "<td>Try</td><td>2", "<td>Error</td>", "<td>Log</td>"):  # fmt: skip
        assert field in body, field
    assert "SourceUnavailableError: cannot connect to totesys at 127.0.0.1:1/totesys" in body
    assert "try 2" in sent[0]["Subject"], "the email comes after the retry, not before"
    assert "s3cret-never-shown" not in body
    # `airflow dags test` itself logs, at debug level, the values it registers for masking
    # (MaskSecret messages); nothing else in the output may contain the password.
    output = [line for line in (result.output).splitlines() if "MaskSecret" not in line]
    assert not [line for line in output if "s3cret-never-shown" in line]


def test_freshness_breach_emails_and_a_fresh_warehouse_does_not(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings
) -> None:
    env = airflow_env(airflow_stack, airflow_home)
    url = airflow_stack.totesys_db_url
    fresh = dags_test(env, "2026-11-28T12:15:00+00:00", FORCE_LOAD)
    assert run_succeeded(fresh)
    mails = len(airflow_stack.messages())

    # a change whose last_updated is hours old, and a run off the load interval: not loaded
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE payment SET paid = NOT paid, last_updated = now() - interval '2 hours'"
                     " WHERE payment_id = 1")  # fmt: skip
    stale = dags_test(env, "2026-11-28T12:20:00+00:00")

    assert "state=failed" in stale.output
    sent = new_messages(airflow_stack, mails)
    assert len(sent) == 1
    assert sent[0]["Subject"].startswith("[totesys] totesys_etl.freshness failed")
    assert "freshness breach" in sent[0].get_body().get_content()

    caught_up = dags_test(env, "2026-11-28T12:30:00+00:00")
    assert run_succeeded(caught_up)
    assert len(new_messages(airflow_stack, mails)) == 1, "no breach, no email"


def test_a_run_with_a_poison_row_succeeds_and_emails_it_once(
    airflow_stack: StackEndpoints, airflow_home: Path, seeded: Settings
) -> None:
    env = airflow_env(airflow_stack, airflow_home)
    url = airflow_stack.totesys_db_url
    assert run_succeeded(dags_test(env, "2026-11-28T13:15:00+00:00", FORCE_LOAD))
    mails = len(airflow_stack.messages())
    with psycopg.connect(url) as conn:
        poisoned = conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = '2024-02-30',"
            " last_updated = now()::timestamp(3) WHERE sales_order_id = 1 RETURNING sales_order_id"
        ).fetchone()[0]  # type: ignore[index]
        # and an amount too large for this (prepared, narrower) warehouse: set aside at load
        conn.execute(
            "UPDATE payment SET payment_amount = 12345678.25, last_updated = now()::timestamp(3)"
            " WHERE payment_id = 1"
        )
    with psycopg.connect(airflow_stack.warehouse_db_url) as conn:
        conn.execute("ALTER TABLE fact_payment ALTER COLUMN payment_amount TYPE numeric(9, 2)")
    try:
        run = dags_test(env, "2026-11-28T13:30:00+00:00", FORCE_LOAD)

        assert run_succeeded(run), run.output[-3000:]
        sent = new_messages(airflow_stack, mails)
        assert [m["Subject"].split(" in batch")[0] for m in sent] == [
            "[totesys] 1 row(s) set aside"
        ] * 2
        body = sent[0].get_body().get_content()
        assert f"fact_sales_order sales_order_id={poisoned}" in body
        assert "agreed_delivery_date = &#39;2024-02-30&#39;" in body and "Failed to parse" in body
        at_load = sent[1].get_body().get_content()
        assert "fact_payment payment_id=1" in at_load and "numeric(9, 2)" in at_load

        again = dags_test(env, "2026-11-28T13:45:00+00:00", FORCE_LOAD)
        assert run_succeeded(again)
        assert len(new_messages(airflow_stack, mails)) == 2, "a batch's rows are emailed once"
        with psycopg.connect(url) as conn:  # corrected: the next run loads them, quietly
            conn.execute(
                "UPDATE sales_order SET agreed_delivery_date = '2024-03-01',"
                " last_updated = now()::timestamp(3) WHERE sales_order_id = 1"
            )
            conn.execute(
                "UPDATE payment SET payment_amount = 100, last_updated = now()::timestamp(3)"
                " WHERE payment_id = 1"
            )
        assert run_succeeded(dags_test(env, "2026-11-28T14:00:00+00:00", FORCE_LOAD))
        assert len(new_messages(airflow_stack, mails)) == 2
        with psycopg.connect(airflow_stack.warehouse_db_url) as conn:
            assert conn.execute(
                "SELECT payment_amount FROM fact_payment WHERE payment_id = 1"
                " ORDER BY last_updated_date DESC, last_updated_time DESC LIMIT 1"
            ).fetchone() == (Decimal("100.00"),)
    finally:  # the module's later tests share this warehouse: never leave it narrowed
        with psycopg.connect(airflow_stack.warehouse_db_url) as conn:
            conn.execute("ALTER TABLE fact_payment ALTER COLUMN payment_amount TYPE numeric")
