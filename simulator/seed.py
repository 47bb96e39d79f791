"""Seed totesys with its history from the 2022-11-03 launch up to an `as_of` date.

Scale 1 is the real database on 2024-11-14 (11,175 sales orders, 4,640 purchase orders,
15,815 transactions and payments, 472 designs); the busy tables grow linearly with the
scale. History is generated one week at a time and streamed with COPY into bare tables,
then the spec's keys and foreign keys are added (validating every row), all in one
transaction: memory stays bounded at any scale and a failed seed leaves nothing behind.
Deterministic: the same (scale, seed, as_of) gives the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import psycopg
from faker import Faker
from psycopg import sql

from simulator import reference_data as ref
from simulator import schema

REAL_SNAPSHOT = date(2024, 11, 14)
REAL_COUNTS = {"sales_order": 11_175, "purchase_order": 4_640, "design": 472}
FIRST_ORDER_DAY = date(2022, 11, 4)
CHUNK_DAYS = 7
LONG_DELIVERY_SHARE = 65 / 11_175
ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class SeedError(RuntimeError):
    """Seeding refused or failed; nothing was written."""


@dataclass(frozen=True)
class SeedPlan:
    scale: float = 1.0
    seed: int = 42
    as_of: date = REAL_SNAPSHOT

    def count(self, table: str) -> int:
        return round(REAL_COUNTS[table] * self.scale)


def flip_timestamp(day: date, seed: int) -> datetime:
    """When the weekday payment job ran on `day`: about 07:55:11.xxx, one value per day."""
    millis = random.Random(f"{seed}:flip:{day.isoformat()}").randrange(1000)
    return datetime.combine(day, time(7, 55, 11, millis * 1000))


def is_flipped(created: datetime, payment_date: date, now: datetime, seed: int) -> bool:
    """The real job pays on weekdays only, never on the creation day, and only once due."""
    return (
        payment_date.weekday() < 5
        and payment_date != created.date()
        and flip_timestamp(payment_date, seed) <= now
    )


def order_timestamp(rng: random.Random, day: date) -> datetime:
    """Orders arrive Mon-Fri 08:00-18:59 at about hh:mm:09.8-10.8 (spec/mapping.md)."""
    offset = timedelta(hours=rng.randrange(8, 19), minutes=rng.randrange(60))
    return (
        datetime.combine(day, time()) + offset + timedelta(milliseconds=9800 + rng.randrange(1000))
    )


def working_hours_timestamp(rng: random.Random, day: date) -> datetime:
    seconds = rng.randrange(8 * 3600, 19 * 3600)
    return datetime.combine(day, time()) + timedelta(
        seconds=seconds, milliseconds=rng.randrange(1000)
    )


def allocate(total: int, slots: int, rng: random.Random) -> list[int]:
    """Split `total` over `slots` with day-to-day jitter; the parts sum to exactly `total`."""
    weights = [rng.uniform(0.6, 1.4) for _ in range(slots)]
    whole = sum(weights)
    counts, running, previous = [], 0.0, 0
    for weight in weights:
        running += weight
        upto = round(total * running / whole)
        counts.append(upto - previous)
        previous = upto
    return counts


def weekdays(start: date, end: date) -> list[date]:
    """Mon-Fri dates in [start, end)."""
    days = (start + timedelta(n) for n in range((end - start).days))
    return [day for day in days if day.weekday() < 5]


def cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


@dataclass
class OrderFactory:
    """Draws order, transaction and payment rows with the real value domains."""

    rng: random.Random
    seed: int
    item_codes: set[str] = field(default_factory=set)

    def agreed_dates(self, created: datetime) -> tuple[str, str]:
        day = created.date()
        delivery = self.rng.randrange(8)
        if self.rng.random() < LONG_DELIVERY_SHARE:
            delivery = self.rng.randrange(8, 621)
        return (day + timedelta(delivery)).isoformat(), (
            day + timedelta(self.rng.randrange(7))
        ).isoformat()

    def item_code(self) -> str:
        while True:
            code = "".join(self.rng.choices(ALPHANUMERIC, k=7))
            if code not in self.item_codes:
                self.item_codes.add(code)
                return code

    def sales_order(self, order_id: int, created: datetime, max_design: int) -> tuple[object, ...]:
        delivery, payment = self.agreed_dates(created)
        rng = self.rng
        return (
            order_id, created, created, rng.randint(1, max_design), rng.randint(1, 20),
            rng.randint(1, 20), rng.randint(1000, 100_000), cents(rng.randint(200, 400)),
            rng.randint(1, 3), delivery, payment, rng.randint(1, 30),
        )  # fmt: skip

    def purchase_order(self, order_id: int, created: datetime) -> tuple[object, ...]:
        delivery, payment = self.agreed_dates(created)
        rng = self.rng
        return (
            order_id, created, created, rng.randint(1, 20), rng.randint(1, 20), self.item_code(),
            rng.randint(1, 999), cents(rng.randint(300, 99_999)), rng.randint(1, 3),
            delivery, payment, rng.randint(1, 30),
        )  # fmt: skip

    def payment(
        self,
        payment_id: int,
        transaction_id: int,
        order: Sequence[object],
        sale: bool,
        now: datetime,
    ) -> tuple[object, ...]:
        """The payment row created with its order; paid later by the 07:55 job if due."""
        created = order[1]
        assert isinstance(created, datetime)
        counterparty, quantity, price, currency, payment_date = (
            (order[5], order[6], order[7], order[8], order[10])
            if sale
            else (order[4], order[6], order[7], order[8], order[10])
        )
        assert (
            isinstance(quantity, int) and isinstance(price, str) and isinstance(payment_date, str)
        )
        amount = cents(quantity * int(price.replace(".", "")))
        due = date.fromisoformat(payment_date)
        paid = is_flipped(created, due, now, self.seed)
        last_updated = flip_timestamp(due, self.seed) if paid else created
        return (
            payment_id, created, last_updated, transaction_id, counterparty, amount, currency,
            1 if sale else 3, paid, payment_date, self.rng.randrange(10_000_000, 100_000_000),
            self.rng.randrange(10_000_000, 100_000_000),
        )  # fmt: skip


@dataclass
class HistoryRows:
    """One chunk of generated history, per table."""

    design: list[tuple[object, ...]] = field(default_factory=list)
    sales_order: list[tuple[object, ...]] = field(default_factory=list)
    purchase_order: list[tuple[object, ...]] = field(default_factory=list)
    transaction: list[tuple[object, ...]] = field(default_factory=list)
    payment: list[tuple[object, ...]] = field(default_factory=list)

    def tables(self) -> dict[str, list[tuple[object, ...]]]:
        return {
            "design": self.design,
            "sales_order": self.sales_order,
            "purchase_order": self.purchase_order,
            "transaction": self.transaction,
            "payment": self.payment,
        }


def generate_history(plan: SeedPlan) -> Iterator[HistoryRows]:
    """Orders (with their transaction and payment), and designs, day by day, in chunks."""
    rng = random.Random(f"{plan.seed}:history")
    factory = OrderFactory(random.Random(f"{plan.seed}:values"), plan.seed)
    days = weekdays(FIRST_ORDER_DAY, plan.as_of)
    if not days:
        raise SeedError(f"as_of {plan.as_of} leaves no weekday after {FIRST_ORDER_DAY} for orders")
    now = datetime.combine(plan.as_of, time())
    sales = allocate(plan.count("sales_order"), len(days), rng)
    purchases = allocate(plan.count("purchase_order"), len(days), rng)
    launch_designs = max(1, round(14 * plan.scale))
    designs = allocate(max(plan.count("design") - launch_designs, 0), len(days), rng)
    design_names: set[str] = set()
    ids = {"design": 0, "sales_order": 0, "purchase_order": 0, "transaction": 0}

    def add_design(rows: HistoryRows, created: datetime) -> None:
        ids["design"] += 1
        name = rng.choice(ref.DESIGN_NAMES)
        file_name = ref.design_file_name(rng, name, created)
        while file_name in design_names:
            file_name = ref.design_file_name(rng, name, created)
        design_names.add(file_name)
        rows.design.append(
            (ids["design"], created, name, rng.choice(ref.FILE_LOCATIONS), file_name, created)
        )

    chunk = HistoryRows()
    for _ in range(launch_designs):
        add_design(chunk, ref.SEEDED_AT_LATER)
    for index, day in enumerate(days):
        designs_before_today = ids["design"]
        for created in sorted(working_hours_timestamp(rng, day) for _ in range(designs[index])):
            add_design(chunk, created)
        orders = [(order_timestamp(rng, day), True) for _ in range(sales[index])]
        orders += [(order_timestamp(rng, day), False) for _ in range(purchases[index])]
        orders.sort(key=lambda order: order[0])
        first_transaction = ids["transaction"] + 1
        payment_ids = list(range(first_transaction, first_transaction + len(orders)))
        for pair in range(0, len(payment_ids) - 1, 2):
            if rng.random() < 0.005:  # payment 9 <-> transaction 10 happens in the real data
                payment_ids[pair], payment_ids[pair + 1] = payment_ids[pair + 1], payment_ids[pair]
        for (created, sale), payment_id in zip(orders, payment_ids, strict=True):
            ids["transaction"] += 1
            if sale:
                ids["sales_order"] += 1
                order = factory.sales_order(ids["sales_order"], created, designs_before_today)
                chunk.sales_order.append(order)
                link: tuple[int | None, int | None] = (ids["sales_order"], None)
            else:
                ids["purchase_order"] += 1
                order = factory.purchase_order(ids["purchase_order"], created)
                chunk.purchase_order.append(order)
                link = (None, ids["purchase_order"])
            kind = "SALE" if sale else "PURCHASE"
            chunk.transaction.append((ids["transaction"], kind, *link, created, created))
            chunk.payment.append(factory.payment(payment_id, ids["transaction"], order, sale, now))
        if (index + 1) % CHUNK_DAYS == 0:
            yield chunk
            chunk = HistoryRows()
    yield chunk


def reference_rows(seed: int) -> dict[str, list[tuple[object, ...]]]:
    rng = random.Random(f"{seed}:reference")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    at = (ref.SEEDED_AT, ref.SEEDED_AT)
    return {
        "currency": [(*row, *at) for row in ref.CURRENCIES],
        "payment_type": [(*row, *at) for row in ref.PAYMENT_TYPES],
        "department": [(*row, *at) for row in ref.DEPARTMENTS],
        "address": list(ref.make_addresses(rng, fake)),
        "staff": list(ref.make_staff(rng, fake)),
        "counterparty": list(ref.make_counterparties(rng, fake)),
    }


def copy_rows(
    cur: psycopg.Cursor[tuple[object, ...]], table: str, rows: Sequence[tuple[object, ...]]
) -> None:
    if not rows:
        return
    statement = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def seed_totesys(url: str, plan: SeedPlan, replace: bool = False) -> dict[str, int]:
    """Create the schema and load the history; returns rows per table."""
    with psycopg.connect(url) as conn:
        if schema.has_tables(conn):
            if not replace:
                raise SeedError("totesys already has tables; pass --replace to drop and reseed")
            schema.drop_totesys(conn)
        schema.create_tables(conn)
        with conn.cursor() as cur:
            for table, rows in reference_rows(plan.seed).items():
                copy_rows(cur, table, rows)
            for chunk in generate_history(plan):
                for table, rows in chunk.tables().items():
                    copy_rows(cur, table, rows)
        schema.add_constraints(conn)
        schema.sync_sequences(conn)
        counts = table_counts(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return counts


def table_counts(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    counts = {}
    for table in schema.TABLES:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        counts[table] = row[0] if row and isinstance(row[0], int) else 0
    return counts
