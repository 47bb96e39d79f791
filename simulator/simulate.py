"""Advance the totesys clock the way the real application changes the database.

Per weekday (spec/mapping.md): the payment job at about 07:55:11 sets `paid` on payments due
that day (never on their creation day) and moves `last_updated`; orders arrive 08:00-18:59,
each inserted in one transaction with its transaction and payment sharing one
`created_at`; new designs appear; and now and then someone edits an address, a department,
a staff member or a counterparty, bumping `last_updated`. Weekends are quiet.

The clock starts at the newest timestamp already in the database. Each day's events come
from a generator seeded with (seed, date), so the same seed gives the same history however
the time is split into calls. `follow` keeps the database changing in real time: it
repeatedly simulates from the clock up to the wall clock (UTC, as the source's naive
timestamps are read).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from faker import Faker
from psycopg import sql

from simulator import reference_data as ref
from simulator.seed import (
    OrderFactory,
    flip_timestamp,
    order_timestamp,
    working_hours_timestamp,
)

Connection = psycopg.Connection[tuple[object, ...]]

SALES_PER_WEEKDAY = 22
PURCHASES_PER_WEEKDAY = 9
DESIGNS_PER_WEEKDAY = 0.9
DEPARTMENT_LOCATIONS = ["Manchester", "Leeds", "Liverpool", "Sheffield", "York"]


@dataclass(frozen=True)
class SimulationPlan:
    days: float = 1.0
    rate: float = 1.0  # multiplies orders and designs per weekday
    edits_per_weekday: float = 0.5  # expected dimension edits per weekday
    seed: int = 42


@dataclass
class SimulationReport:
    start: datetime
    end: datetime
    events: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        parts = ", ".join(f"{kind}={count}" for kind, count in sorted(self.events.items()))
        window = f"{self.start:%Y-%m-%d %H:%M:%S} -> {self.end:%Y-%m-%d %H:%M:%S}"
        return f"simulated {window}: {parts or 'no events'}"


@dataclass(order=True)
class Event:
    at: datetime
    kind: str = field(compare=False)
    apply: Callable[[Connection, datetime], int] = field(compare=False)


def clock_now(conn: Connection) -> datetime:
    """The newest created_at/last_updated in the database: where the simulated clock stands."""
    parts = [
        sql.SQL("SELECT max(greatest(created_at, last_updated)) FROM {}").format(sql.Identifier(t))
        for t in ("sales_order", "purchase_order", "payment", "design", "address", "staff",
                  "department", "counterparty")
    ]  # fmt: skip
    row = conn.execute(
        sql.SQL("SELECT max(m) FROM ({}) AS t(m)").format(sql.SQL(" UNION ALL ").join(parts))
    ).fetchone()
    if row is None or not isinstance(row[0], datetime):
        raise RuntimeError("totesys has no rows to continue from; seed it first")
    return row[0]


def noisy_count(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, math.sqrt(mean)))) if mean > 0 else 0


def expected_count(rng: random.Random, mean: float) -> int:
    whole = int(mean)
    return whole + (1 if rng.random() < mean - whole else 0)


class DayPlanner:
    """Builds one day's events from a generator seeded by (seed, day)."""

    def __init__(self, plan: SimulationPlan, day: date) -> None:
        self.plan = plan
        self.day = day
        self.rng = random.Random(f"{plan.seed}:simulate:{day.isoformat()}")
        self.fake = Faker("en_US")
        self.fake.seed_instance(f"{plan.seed}:{day.isoformat()}")
        self.orders = OrderFactory(self.rng, plan.seed)

    def events(self) -> list[Event]:
        if self.day.weekday() >= 5:
            return []
        rng, rate = self.rng, self.plan.rate
        events = [Event(flip_timestamp(self.day, self.plan.seed), "payments_paid", self.pay_due)]
        for _ in range(noisy_count(rng, SALES_PER_WEEKDAY * rate)):
            events.append(Event(order_timestamp(rng, self.day), "sales_orders", self.sale))
        for _ in range(noisy_count(rng, PURCHASES_PER_WEEKDAY * rate)):
            events.append(Event(order_timestamp(rng, self.day), "purchase_orders", self.purchase))
        for _ in range(expected_count(rng, DESIGNS_PER_WEEKDAY * rate)):
            events.append(Event(working_hours_timestamp(rng, self.day), "designs", self.new_design))
        edits = [
            ("address_edits", self.edit_address),
            ("department_edits", self.edit_department),
            ("staff_edits", self.edit_staff),
            ("counterparty_edits", self.edit_counterparty),
        ]
        for _ in range(expected_count(rng, self.plan.edits_per_weekday)):
            kind, apply = rng.choice(edits)
            events.append(Event(working_hours_timestamp(rng, self.day), kind, apply))
        return sorted(events)

    # --- the application's writes -------------------------------------------------------
    def pay_due(self, conn: Connection, at: datetime) -> int:
        cur = conn.execute(
            "UPDATE payment SET paid = true, last_updated = %s"
            " WHERE NOT paid AND payment_date = %s AND created_at::date <> %s",
            (at, self.day.isoformat(), self.day),
        )
        return cur.rowcount

    def _next_id(self, conn: Connection, table: str, column: str) -> int:
        row = conn.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s))", (f"public.{table}", column)
        ).fetchone()
        assert row is not None and isinstance(row[0], int)
        return row[0]

    def _order(self, conn: Connection, at: datetime, sale: bool) -> int:
        """Order, transaction and payment in one transaction, all with the same created_at."""
        if sale:
            row = conn.execute("SELECT max(design_id) FROM design").fetchone()
            assert row is not None and isinstance(row[0], int)
            order = self.orders.sales_order(
                self._next_id(conn, "sales_order", "sales_order_id"), at, row[0]
            )
            insert = "INSERT INTO sales_order VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        else:
            order = self.orders.purchase_order(
                self._next_id(conn, "purchase_order", "purchase_order_id"), at
            )
            insert = "INSERT INTO purchase_order VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        conn.execute(insert, order)
        transaction_id = self._next_id(conn, "transaction", "transaction_id")
        link = (order[0], None) if sale else (None, order[0])
        conn.execute(
            "INSERT INTO transaction VALUES (%s, %s, %s, %s, %s, %s)",
            (transaction_id, "SALE" if sale else "PURCHASE", *link, at, at),
        )
        payment_id = self._next_id(conn, "payment", "payment_id")
        payment = self.orders.payment(payment_id, transaction_id, order, sale, now=at)
        conn.execute("INSERT INTO payment VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", payment)
        return 1

    def sale(self, conn: Connection, at: datetime) -> int:
        return self._order(conn, at, sale=True)

    def purchase(self, conn: Connection, at: datetime) -> int:
        return self._order(conn, at, sale=False)

    def new_design(self, conn: Connection, at: datetime) -> int:
        name = self.rng.choice(ref.DESIGN_NAMES)
        conn.execute(
            "INSERT INTO design (created_at, design_name, file_location, file_name, last_updated)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                at,
                name,
                self.rng.choice(ref.FILE_LOCATIONS),
                ref.design_file_name(self.rng, name, at),
                at,
            ),
        )
        return 1

    def edit_address(self, conn: Connection, at: datetime) -> int:
        address_id = self.rng.randint(1, ref.ADDRESS_COUNT)
        if self.rng.random() < 0.5:
            phone = f"{self.rng.randrange(1000, 10000)} {self.rng.randrange(100000, 1000000)}"
            conn.execute(
                "UPDATE address SET phone = %s, last_updated = %s WHERE address_id = %s",
                (phone, at, address_id),
            )
        else:
            conn.execute(
                "UPDATE address SET address_line_1 = %s, city = %s, last_updated = %s"
                " WHERE address_id = %s",
                (self.fake.street_address(), self.fake.city(), at, address_id),
            )
        return 1

    def edit_department(self, conn: Connection, at: datetime) -> int:
        conn.execute(
            "UPDATE department SET location = %s, last_updated = %s WHERE department_id = %s",
            (self.rng.choice(DEPARTMENT_LOCATIONS), at, self.rng.randint(1, len(ref.DEPARTMENTS))),
        )
        return 1

    def edit_staff(self, conn: Connection, at: datetime) -> int:
        staff_id = self.rng.randint(1, 20)
        last_name = self.fake.last_name()
        conn.execute(
            "UPDATE staff SET last_name = %s,"
            " email_address = lower(first_name || '.' || %s || '@terrifictotes.com'),"
            " last_updated = %s WHERE staff_id = %s",
            (last_name, last_name, at, staff_id),
        )
        return 1

    def edit_counterparty(self, conn: Connection, at: datetime) -> int:
        counterparty_id = self.rng.randint(1, ref.COUNTERPARTY_COUNT)
        choice = self.rng.random()
        if choice < 0.4:
            column, value = "commercial_contact", self.fake.name()
        elif choice < 0.7:
            column, value = "legal_address_id", str(self.rng.randint(1, ref.ADDRESS_COUNT))
        else:
            column, value = "counterparty_legal_name", self.fake.company()
        statement = sql.SQL(
            "UPDATE counterparty SET {} = %s, last_updated = %s WHERE counterparty_id = %s"
        )
        conn.execute(statement.format(sql.Identifier(column)), (value, at, counterparty_id))
        return 1


def _advance(
    conn: Connection, plan: SimulationPlan, start: datetime, end: datetime
) -> SimulationReport:
    """Apply every event in (start, end], each committed on its own like the app."""
    report = SimulationReport(start, end)
    day = start.date()
    while day <= end.date():
        for event in DayPlanner(plan, day).events():
            if start < event.at <= end:
                with conn.transaction():
                    report.events[event.kind] += event.apply(conn, event.at)
        day += timedelta(days=1)
    return report


def simulate(url: str, plan: SimulationPlan) -> SimulationReport:
    """Apply every event in (clock, clock + days], each committed on its own like the app."""
    with psycopg.connect(url) as conn:
        start = clock_now(conn)
        conn.commit()
        return _advance(conn, plan, start, start + timedelta(days=plan.days))


def simulate_until(url: str, plan: SimulationPlan, end: datetime) -> SimulationReport:
    """Apply every event in (clock, end]; nothing when the clock already stands at `end` or
    later (the report's window is then empty)."""
    with psycopg.connect(url) as conn:
        start = clock_now(conn)
        conn.commit()
        return _advance(conn, plan, start, max(start, end))


def utc_now() -> datetime:
    """The wall clock as the source's naive timestamps read it (UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def follow(
    url: str,
    plan: SimulationPlan,
    interval: float,
    rounds: int | None = None,
    now: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[SimulationReport]:
    """Keep totesys changing in real time: each round applies the events from the clock up
    to `now()`, with `interval` seconds between rounds. The first round catches up however
    far the clock is behind; a clock ahead of `now()` (after `simulate --days`) waits for
    it. Runs `rounds` rounds, or until the caller stops iterating. `plan.days` is unused."""
    done = 0
    while rounds is None or done < rounds:
        if done:
            sleep(interval)
        yield simulate_until(url, plan, now())
        done += 1
