"""What happens in totesys between two cycles: simulated business, and late commits.

The simulator (simulator.simulate) moves the clock on: orders with their transaction
and payment, the 07:55 payment job, new designs, dimension edits. Late commits are what
the ingest overlap exists for: a transaction that took its `last_updated` a few minutes
ago but commits only now, after an extract already read past that time. They are written
first, before the clock moves, so their timestamps are behind the newest one the previous
extract could have read - and always within the overlap (15 minutes) of its watermark.

A late update only moves a row forward in time (a row whose own last_updated is older
than the late timestamp is chosen): the pipeline keeps the newest version per key.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from simulator.simulate import Connection, DayPlanner, SimulationPlan, clock_now

LATE_BY = (timedelta(seconds=20), timedelta(minutes=10))  # behind the table's newest row
EDITS_PER_WEEKDAY = 3.0


class Business:
    """totesys's simulated business, moved on by windows of the soak's own clock.

    The simulator's clock is the newest row in the database, which a quiet weekend never
    moves: windows of a few hours from there would stay on Friday evening forever. So the
    soak keeps the clock itself and applies the simulator's events of each window, each
    committed on its own as the application does.
    """

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.plan = SimulationPlan(edits_per_weekday=EDITS_PER_WEEKDAY, seed=seed)
        with psycopg.connect(url) as conn:
            self.clock = clock_now(conn)

    def advance(self, hours: float) -> Counter[str]:
        end = self.clock + timedelta(hours=hours)
        events: Counter[str] = Counter()
        with psycopg.connect(self.url) as conn:
            day = self.clock.date()
            while day <= end.date():
                for event in DayPlanner(self.plan, day).events():
                    if self.clock < event.at <= end:
                        with conn.transaction():
                            events[event.kind] += event.apply(conn, event.at)
                day += timedelta(days=1)
        self.clock = end
        return events

    def cycle(self, rng: random.Random, late_rate: float, max_hours: float) -> Counter[str]:
        """Late commits (sometimes), then `uniform(1, max_hours)` hours of business."""
        events: Counter[str] = Counter()
        if rng.random() < late_rate:
            events += late_commits(self.url, rng, self.plan.seed)
        events += self.advance(rng.uniform(1.0, max(1.0, max_hours)))
        return events


def late_commits(url: str, rng: random.Random, seed: int) -> Counter[str]:
    """One to three late rows, each committed in its own transaction as the app would."""
    writers: dict[str, Callable[[Connection, random.Random, int], bool]] = {
        "late_order": late_order,
        "late_payment_update": late_payment_update,
        "late_sales_order_update": late_sales_order_update,
        "late_address_edit": late_address_edit,
        "late_staff_edit": late_staff_edit,
    }
    done: Counter[str] = Counter()
    with psycopg.connect(url) as conn:
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(sorted(writers))
            with conn.transaction():
                if writers[kind](conn, rng, seed):
                    done[kind] += 1
    return done


def _late_time(conn: Connection, rng: random.Random, *tables: str) -> datetime:
    """A few minutes before the newest last_updated of `tables` (millisecond precision)."""
    newest = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT max(last_updated) FROM {}").format(sql.Identifier(t)) for t in tables
    )
    row = conn.execute(sql.SQL("SELECT max(m) FROM ({}) AS t(m)").format(newest)).fetchone()
    assert row is not None and isinstance(row[0], datetime)
    behind = rng.uniform(LATE_BY[0].total_seconds(), LATE_BY[1].total_seconds())
    at = row[0] - timedelta(seconds=behind)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _older_row(
    conn: Connection, rng: random.Random, table: str, key: str, at: datetime
) -> int | None:
    """A random row of `table` last updated before `at` (so the late version is its newest)."""
    rows = conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE last_updated < %s ORDER BY 1").format(
            sql.Identifier(key), sql.Identifier(table)
        ),
        (at,),
    ).fetchall()
    if not rows:
        return None
    value = rng.choice(rows)[0]
    assert isinstance(value, int)
    return value


def late_order(conn: Connection, rng: random.Random, seed: int) -> bool:
    """An order with its transaction and payment, all created a few minutes ago."""
    at = _late_time(conn, rng, "sales_order", "purchase_order", "transaction", "payment")
    # its own seed, so it is not a copy of an order the simulator makes that day
    planner = DayPlanner(SimulationPlan(seed=rng.randrange(1 << 30) + seed), at.date())
    (planner.sale if rng.random() < 0.7 else planner.purchase)(conn, at)
    return True


def late_payment_update(conn: Connection, rng: random.Random, seed: int) -> bool:
    at = _late_time(conn, rng, "payment")
    payment_id = _older_row(conn, rng, "payment", "payment_id", at)
    if payment_id is None:
        return False
    conn.execute(
        "UPDATE payment SET paid = NOT paid, last_updated = %s WHERE payment_id = %s",
        (at, payment_id),
    )
    return True


def late_sales_order_update(conn: Connection, rng: random.Random, seed: int) -> bool:
    """The brief's example of a changed order: units_sold corrected."""
    at = _late_time(conn, rng, "sales_order")
    order_id = _older_row(conn, rng, "sales_order", "sales_order_id", at)
    if order_id is None:
        return False
    conn.execute(
        "UPDATE sales_order SET units_sold = units_sold + %s, last_updated = %s WHERE sales_order_id = %s",
        (rng.randint(1, 500), at, order_id),
    )
    return True


def late_address_edit(conn: Connection, rng: random.Random, seed: int) -> bool:
    """Refreshes dim_location and every dim_counterparty on the address."""
    at = _late_time(conn, rng, "address")
    address_id = _older_row(conn, rng, "address", "address_id", at)
    if address_id is None:
        return False
    phone = f"{rng.randrange(1000, 10000)} {rng.randrange(100000, 1000000)}"
    conn.execute(
        "UPDATE address SET phone = %s, last_updated = %s WHERE address_id = %s",
        (phone, at, address_id),
    )
    return True


def late_staff_edit(conn: Connection, rng: random.Random, seed: int) -> bool:
    at = _late_time(conn, rng, "staff")
    staff_id = _older_row(conn, rng, "staff", "staff_id", at)
    if staff_id is None:
        return False
    conn.execute(
        "UPDATE staff SET last_name = %s, last_updated = %s WHERE staff_id = %s",
        (rng.choice(["O'Hara", "Franey-Pitts", "Nguyen", "Smith"]), at, staff_id),
    )
    return True
