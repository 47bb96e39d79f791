"""The simulator changes totesys the way the real application does, reproducibly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.__main__ import main as local_main
from simulator.seed import SeedPlan, seed_totesys
from simulator.simulate import (
    SimulationPlan,
    SimulationReport,
    clock_now,
    follow,
    simulate,
    utc_now,
)
from tests.simulator.catalog import content_digest

PLAN = SimulationPlan(days=4, rate=1.0, edits_per_weekday=3, seed=11)


def query(url: str, text: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(text.encode(), params).fetchall()


@pytest.fixture(scope="module")
def simulated(make_database: Callable[[str], str]) -> tuple[str, datetime, SimulationReport]:
    url = make_database("simulated")
    seed_totesys(url, SeedPlan(scale=0.1))
    with psycopg.connect(url) as conn:
        start = clock_now(conn)
    return url, start, simulate(url, PLAN)


def test_report_covers_the_window_and_every_kind_of_change(
    simulated: tuple[str, datetime, SimulationReport],
) -> None:
    url, start, report = simulated
    assert report.start == start
    assert (report.end - report.start).days == 4
    for kind in ("sales_orders", "purchase_orders", "payments_paid"):
        assert report.events[kind] > 0, kind
    edits = sum(n for kind, n in report.events.items() if kind.endswith("_edits"))
    assert edits >= 3
    with psycopg.connect(url) as conn:
        assert start < clock_now(conn) <= report.end


def test_new_orders_arrive_with_their_transaction_and_payment(
    simulated: tuple[str, datetime, SimulationReport],
) -> None:
    url, start, report = simulated
    new_sales = query(url, "SELECT count(*) FROM sales_order WHERE created_at > %s", (start,))[0][0]
    new_purchases = query(
        url, "SELECT count(*) FROM purchase_order WHERE created_at > %s", (start,)
    )[0][0]
    assert (new_sales, new_purchases) == (
        report.events["sales_orders"],
        report.events["purchase_orders"],
    )
    broken = query(
        url,
        """
        SELECT count(*) FROM transaction t
        LEFT JOIN sales_order s ON s.sales_order_id = t.sales_order_id
        LEFT JOIN purchase_order po ON po.purchase_order_id = t.purchase_order_id
        LEFT JOIN payment p ON p.transaction_id = t.transaction_id
        WHERE t.created_at > %s AND (
            p.payment_id IS NULL OR p.created_at <> t.created_at
            OR coalesce(s.created_at, po.created_at) <> t.created_at
            OR p.payment_amount <> coalesce(s.units_sold * s.unit_price,
                                            po.item_quantity * po.item_unit_price)
            OR extract(isodow FROM t.created_at) > 5)""",
        (start,),
    )[0][0]
    assert broken == 0


def test_payments_flip_only_at_0755_on_their_due_weekday(
    simulated: tuple[str, datetime, SimulationReport],
) -> None:
    url, start, report = simulated
    flipped = query(
        url,
        """
        SELECT payment_date, created_at, last_updated FROM payment
        WHERE paid AND last_updated > %s""",
        (start,),
    )
    assert len(flipped) == report.events["payments_paid"] > 0
    for payment_date, created_at, last_updated in flipped:
        assert last_updated.date().isoformat() == payment_date
        assert (last_updated.hour, last_updated.minute, last_updated.second) == (7, 55, 11)
        assert last_updated.weekday() < 5
        assert created_at.date() != last_updated.date()
    overdue = query(
        url,
        """
        SELECT count(*) FROM payment WHERE NOT paid AND payment_date::date <= %s::date
          AND payment_date::date > %s::date AND payment_date::date <> created_at::date
          AND extract(isodow FROM payment_date::date) <= 5""",
        (report.end, start),
    )[0][0]
    assert overdue == 0


def test_dimension_edits_bump_last_updated(
    simulated: tuple[str, datetime, SimulationReport],
) -> None:
    url, start, report = simulated
    edited: dict[str, int] = dict(
        query(
            url,
            """
        SELECT 'address_edits', count(*) FROM address WHERE last_updated > %(s)s UNION ALL
        SELECT 'department_edits', count(*) FROM department WHERE last_updated > %(s)s UNION ALL
        SELECT 'staff_edits', count(*) FROM staff WHERE last_updated > %(s)s UNION ALL
        SELECT 'counterparty_edits', count(*) FROM counterparty WHERE last_updated > %(s)s""",
            {"s": start},
        )
    )
    for kind, rows_changed in edited.items():
        if report.events[kind]:  # a row edited twice counts once here
            assert 0 < rows_changed <= report.events[kind], kind
        else:
            assert rows_changed == 0, kind
    unchanged_created = query(url, "SELECT count(*) FROM address WHERE created_at > %s", (start,))[
        0
    ][0]
    assert unchanged_created == 0


def test_same_seed_same_history(make_database: Callable[[str], str]) -> None:
    urls = [make_database("sim_determinism") for _ in range(2)]
    for url in urls:
        seed_totesys(url, SeedPlan(scale=0.02))
        simulate(url, SimulationPlan(days=2, edits_per_weekday=2, seed=5))

    assert content_digest(urls[0]) == content_digest(urls[1])


def clock_of(url: str) -> datetime:
    with psycopg.connect(url) as conn:
        return clock_now(conn)


def test_following_in_rounds_applies_what_one_run_applies(
    make_database: Callable[[str], str],
) -> None:
    followed, at_once = (make_database("sim_follow") for _ in range(2))
    for url in (followed, at_once):
        seed_totesys(url, SeedPlan(scale=0.02))
    plan = SimulationPlan(days=3, edits_per_weekday=2, seed=7)
    start = clock_of(followed)
    ticks = iter([start + timedelta(days=1), start + timedelta(days=1), start + timedelta(days=3)])
    slept: list[float] = []

    reports = list(follow(followed, plan, 7.5, rounds=3, now=ticks.__next__, sleep=slept.append))

    assert slept == [7.5, 7.5]  # between rounds, not after the last
    first, repeat, last = reports
    assert (first.start, first.end) == (start, start + timedelta(days=1))
    assert first.events.total() > 0
    assert repeat.start <= repeat.end == first.end
    assert repeat.events.total() == 0  # the same window again applies nothing twice
    assert last.end == start + timedelta(days=3)
    applied = sum((report.events for report in reports), Counter[str]())
    assert +applied == +simulate(at_once, plan).events
    assert clock_of(followed) == clock_of(at_once)


def test_follow_waits_while_the_clock_is_ahead_of_now(make_database: Callable[[str], str]) -> None:
    url = make_database("sim_ahead")
    seed_totesys(url, SeedPlan(scale=0.02))
    start = clock_of(url)

    (report,) = follow(url, SimulationPlan(), 60, rounds=1, now=lambda: start - timedelta(hours=1))

    assert (report.start, report.end) == (start, start)
    assert report.events.total() == 0
    assert clock_of(url) == start


def test_cli_follow_catches_up_to_the_wall_clock(
    make_database: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = make_database("sim_cli_follow")
    seed_totesys(url, SeedPlan(scale=0.02, as_of=utc_now().date() - timedelta(days=7)))
    before = clock_of(url)
    monkeypatch.setenv("TOTESYS_DB_URL", url)

    code = local_main(
        ["--state-dir", str(tmp_path), "simulate", "--follow", "--rounds", "1", "--interval", "0"]
    )

    assert code == 0
    after = clock_of(url)
    assert before < after <= utc_now()
    assert after - before > timedelta(days=2)  # a week with 5 weekdays of orders caught up
    printed = capsys.readouterr().out
    assert printed.startswith(f"simulated {before:%Y-%m-%d %H:%M:%S} -> ")
    assert "sales_orders=" in printed
