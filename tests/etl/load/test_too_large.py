"""A prepared warehouse narrower than the contract (a varchar(n) name, a numeric(p, s)
amount): a value that does not fit is set aside at load instead of failing the batch on
every retry; facts that refer to a set-aside dimension row wait for it; once the source
row is corrected it loads. Against the real services."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.errors import DataError
from etl.load import too_large, waiting
from etl.load.loader import connect_warehouse, init_warehouse
from etl.ops.cycle import run_cycle
from tests.etl.load.test_loader import source
from tests.etl.test_main import env_for, run_etl


def longest_counterparty(url: str) -> tuple[int, int]:
    """(id, name length) of the counterparty with the longest legal name."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT counterparty_id, length(counterparty_legal_name) FROM counterparty"
            " ORDER BY 2 DESC, 1 LIMIT 1"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def narrow(settings: Settings, length: int) -> None:
    """The prepared warehouse's legal name holds fewer characters than the longest one."""
    with connect_warehouse(settings) as conn:
        conn.execute(
            "ALTER TABLE dim_counterparty ALTER COLUMN counterparty_legal_name"
            f" TYPE varchar({length})"
        )
        conn.execute("ALTER TABLE fact_payment ALTER COLUMN payment_amount TYPE numeric(9, 2)")


def test_a_value_too_large_for_the_warehouse_is_set_aside_and_loads_once_corrected(
    stack: StackEndpoints, settings: Settings, s3: Any
) -> None:
    url = source(settings)
    counterparty, length = longest_counterparty(url)
    init_warehouse(settings)
    narrow(settings, length - 1)
    with psycopg.connect(url) as conn:  # and one payment beyond the warehouse's numeric(9, 2)
        payment = conn.execute(
            "UPDATE payment SET payment_amount = 12345678.25, last_updated = now()::timestamp(3)"
            " WHERE payment_id = (SELECT min(payment_id) FROM payment) RETURNING payment_id"
        ).fetchone()[0]  # type: ignore[index]

    with pytest.raises(DataError, match=r"^dim_counterparty\.counterparty_legal_name: does not"):
        run_cycle(replace(settings, bad_row_policy="fail"), s3)  # the hard stop, one line
    cycle = run_cycle(settings, s3)  # the same batch flows under set_aside

    batch = cycle.loaded[0]  # the batch the fail policy stopped
    assert batch.tables["dim_counterparty"]["set_aside"] >= 1
    with connect_warehouse(settings) as conn:
        aside = too_large.open_rows(conn).to_pylist()
        parked = waiting.counts(conn)
        assert conn.execute(
            "SELECT count(*) FROM dim_counterparty WHERE counterparty_id = %s", (counterparty,)
        ).fetchone() == (0,)
    assert {(r["table"], r["column"]) for r in aside} == {
        ("dim_counterparty", "counterparty_legal_name"), ("fact_payment", "payment_amount")
    }  # fmt: skip
    assert [r["key"] for r in aside if r["table"] == "fact_payment"] == [str(payment)]
    assert sum(parked.values()) > 0, "facts of the set-aside counterparty wait for it"
    assert all("does not fit the warehouse column's character varying" in r["reason"]
               for r in aside if r["table"] == "dim_counterparty")  # fmt: skip
    env = env_for(stack, settings)
    status = run_etl(env, "status")
    assert "set aside at load:" in status.stdout, status.stdout + status.stderr
    assert f"dim_counterparty counterparty_id={counterparty}" in status.stdout
    compared = run_etl(env, "reconcile")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "set aside left out" in compared.stdout

    with psycopg.connect(url) as conn:  # the source corrected: a shorter name, an amount
        conn.execute(
            "UPDATE payment SET payment_amount = 100.00, last_updated = now()::timestamp(3)"
            " WHERE payment_id = %s",
            (payment,),
        )
        conn.execute(
            "UPDATE counterparty SET counterparty_legal_name = left(counterparty_legal_name, %s),"
            " last_updated = now()::timestamp(3) WHERE length(counterparty_legal_name) >= %s",
            (length - 1, length),
        )
    run_cycle(settings, s3)

    with connect_warehouse(settings) as conn:
        assert too_large.open_rows(conn).num_rows == 0
        assert waiting.counts(conn) == {}
        assert conn.execute(
            "SELECT count(*) FROM dim_counterparty WHERE counterparty_id = %s", (counterparty,)
        ).fetchone() == (1,)
    compared = run_etl(env, "reconcile")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "set aside left out" not in compared.stdout


def _set_aside(settings: Settings, *batches: str) -> None:
    """One open, unreported set-aside row per batch, as load records them."""
    init_warehouse(settings)
    with connect_warehouse(settings) as conn:
        too_large.ensure(conn)
        conn.execute("DELETE FROM etl.load_set_aside")
        for n, batch in enumerate(batches):
            conn.execute(
                'INSERT INTO etl.load_set_aside ("table", key_column, key, "column", value,'
                " reason, batch_id) VALUES ('dim_staff', 'staff_id', %s, 'email_address',"
                " 'x', 'does not fit', %s)",
                (str(n), batch),
            )


def test_a_set_aside_email_that_fails_is_sent_by_the_next_report(settings: Settings) -> None:
    _set_aside(settings, "20260101T000000Z")
    with connect_warehouse(settings) as conn:
        assert too_large.report_unreported(conn, lambda batch: False) == []
        assert too_large.report_unreported(conn, lambda batch: True) == ["20260101T000000Z"]
        assert too_large.report_unreported(conn, lambda batch: True) == []
