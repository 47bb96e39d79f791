"""How far the warehouse is behind the source, measured on the data itself.

The newest source change the warehouse holds is the latest (last_updated_date,
last_updated_time) across the three facts; the source's newest is the latest
`last_updated` of their source tables. `lag` is the difference (zero when caught up),
`age` is how long ago, by the wall clock, the warehouse's newest change happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from etl import bookkeeping
from etl.config import Settings
from etl.database import connect
from etl.errors import EtlError, one_line
from etl.load import too_large, waiting
from etl.load.target import Target
from etl.storage import ObjectStore
from etl.tables import source_table
from etl.transform.batch import open_rejects
from etl.warehouse import FACTS

Connection = psycopg.Connection[tuple[Any, ...]]

SOURCE_FACT_TABLES = ("sales_order", "purchase_order", "payment")


@dataclass(frozen=True)
class Freshness:
    source_newest: datetime | None
    warehouse_newest: datetime | None

    @property
    def lag(self) -> timedelta | None:
        if self.source_newest is None or self.warehouse_newest is None:
            return None
        return max(self.source_newest - self.warehouse_newest, timedelta(0))

    def age(self, now: datetime) -> timedelta | None:
        return None if self.warehouse_newest is None else now - self.warehouse_newest


def warehouse_newest(settings: Settings) -> datetime | None:
    with connect(settings.warehouse_db_url, "the warehouse") as conn:
        return newest_in_warehouse(
            conn, Target(settings.warehouse_schema, settings.warehouse_names)
        )


def newest_in_warehouse(conn: Connection, target: Target) -> datetime | None:
    """The newest source change the warehouse's facts hold, read on `conn`."""
    parts = [
        sql.SQL("SELECT max({d} + {t}) FROM {table}").format(
            d=target.column(f.name, "last_updated_date"),
            t=target.column(f.name, "last_updated_time"),
            table=target.table(f.name),
        )
        for f in FACTS
    ]
    query = sql.SQL("SELECT max(m) FROM ({}) AS newest(m)").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    try:
        row = conn.execute(query).fetchone()
    except psycopg.errors.UndefinedTable as error:
        raise EtlError(
            f"warehouse: {one_line(error)}; run init-warehouse or set WAREHOUSE_NAME_MAP"
        ) from None
    return None if row is None else row[0]


def source_newest(settings: Settings) -> datetime | None:
    parts = [
        sql.SQL("SELECT max(last_updated) FROM {}").format(source_table(t))
        for t in SOURCE_FACT_TABLES
    ]
    query = sql.SQL("SELECT max(m) FROM ({}) AS newest(m)").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    with connect(settings.totesys_db_url, "totesys") as conn:
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def measure(settings: Settings) -> Freshness:
    settings.require("totesys_db_url", "warehouse_db_url")
    return Freshness(source_newest(settings), warehouse_newest(settings))


def as_utc(source_time: datetime, zone: ZoneInfo) -> datetime:
    """A naive totesys timestamp, written in the source's zone, as naive UTC. In the hour a
    clock goes back the same reading happens twice; the later instant is taken (fold=1), so
    a change can look up to an hour younger there, never older: no alarm fires early."""
    return source_time.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class FreshnessCheck:
    """The oldest source change still missing from the warehouse, and whether it has waited
    longer than the threshold. `oldest_missing` is as the source wrote it; `waited` is
    measured in UTC after reading it in the source's zone (Settings.source_timezone)."""

    oldest_missing: datetime | None
    waited: timedelta | None
    threshold: timedelta

    @property
    def breached(self) -> bool:
        return self.waited is not None and self.waited > self.threshold

    def describe(self) -> str:
        if self.oldest_missing is None:
            return "fresh: every source change is in the warehouse"
        waited = (
            f"the oldest source change not in the warehouse ({self.oldest_missing}) has waited"
            f" {self.waited}"
        )
        if self.breached:  # the whole alert line: the DAG raises it as it is
            return f"freshness breach: {waited}, over the threshold of {self.threshold}"
        return f"ok: {waited}, threshold {self.threshold}"


# fact -> its source table and key, for versions known to be absent from the warehouse
FACT_SOURCE_KEYS = {
    "fact_sales_order": ("sales_order", "sales_order_id"),
    "fact_purchase_orders": ("purchase_order", "purchase_order_id"),
    "fact_payment": ("payment", "payment_id"),
}
# source table -> ([id], [last_updated]) of versions not in the warehouse on purpose
SetAside = dict[str, tuple[list[int], list[datetime]]]


def set_aside_versions(settings: Settings, processed: ObjectStore | None) -> SetAside:
    """The fact versions that are missing from the warehouse on purpose: set aside by
    transform (open rejects) or waiting for a dimension row. A change that is set aside is
    reported by its own email; it must not also age into a freshness breach every run."""
    settings.require("totesys_db_url", "warehouse_db_url")
    rejected = _open_rejects(processed)
    with connect(settings.warehouse_db_url, "the warehouse") as conn:
        return set_aside_in(conn, rejected)


def _open_rejects(processed: ObjectStore | None) -> list[dict[str, Any]]:
    if processed is None:
        return []
    rows: list[dict[str, Any]] = open_rejects(processed).to_pylist()
    return rows


def set_aside_in(conn: Connection, rejected: list[dict[str, Any]]) -> SetAside:
    """set_aside_versions: the open `rejected` rows of transform, and the versions waiting
    or set aside at load read on the warehouse connection `conn`."""
    found: SetAside = {source: ([], []) for source, _ in FACT_SOURCE_KEYS.values()}

    def add(fact: str, key: Any, updated: datetime | None) -> None:
        if fact in FACT_SOURCE_KEYS and updated is not None:
            ids, times = found[FACT_SOURCE_KEYS[fact][0]]
            ids.append(int(key))
            times.append(updated)

    for row in rejected:
        add(row["table"], row["key"], row["last_updated"])
    bookkeeping.check(conn)  # read only what is the loader's own
    for versions in (waiting.versions(conn), too_large.fact_versions(conn)):
        for fact, rows in versions.items():
            for key, updated in rows:
                add(fact, key, updated)
    return found


def oldest_missing(
    settings: Settings, newest_loaded: datetime | None, set_aside: SetAside | None = None
) -> datetime | None:
    """The earliest last_updated in the source newer than anything the warehouse holds,
    leaving out the versions set aside on purpose."""
    parts = []
    params: dict[str, Any] = {"floor": newest_loaded}
    for table in SOURCE_FACT_TABLES:
        conditions: list[sql.Composable] = (
            [sql.SQL("last_updated > %(floor)s")] if newest_loaded else []
        )
        ids, times = (set_aside or {}).get(table, ([], []))
        if ids:
            key = sql.Identifier(f"{table}_id")
            conditions.append(
                sql.SQL(
                    "NOT EXISTS (SELECT 1 FROM unnest({ids}::int[], {times}::timestamp[]) AS x(id, t)"
                    " WHERE x.id = {key} AND x.t = last_updated)"
                ).format(ids=sql.Placeholder(f"{table}_ids"), times=sql.Placeholder(f"{table}_times"), key=key)
            )  # fmt: skip
            params[f"{table}_ids"], params[f"{table}_times"] = ids, times
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        parts.append(
            sql.SQL("SELECT min(last_updated) FROM {} {}").format(source_table(table), where)
        )
    query = sql.SQL("SELECT min(m) FROM ({}) AS oldest(m)").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    with connect(settings.totesys_db_url, "totesys") as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def check(
    settings: Settings, now: datetime, threshold: timedelta, set_aside: SetAside | None = None
) -> FreshnessCheck:
    """`now` is naive UTC; the source's timestamps are read in its own zone."""
    settings.require("totesys_db_url", "warehouse_db_url")
    return _checked(settings, now, threshold, warehouse_newest(settings), set_aside)


def check_on(
    conn: Connection,
    settings: Settings,
    now: datetime,
    threshold: timedelta,
    processed: ObjectStore | None,
) -> FreshnessCheck:
    """check, leaving out set_aside_versions, with the warehouse read on `conn` (a load's
    own connection, committed before the source is scanned): one lag scan per load, and no
    warehouse connection of its own."""
    settings.require("totesys_db_url", "warehouse_db_url")
    rejected = _open_rejects(processed)
    aside = set_aside_in(conn, rejected)
    newest = newest_in_warehouse(conn, Target(settings.warehouse_schema, settings.warehouse_names))
    conn.commit()  # the source scan may take longer than the idle-in-transaction timeout
    return _checked(settings, now, threshold, newest, aside)


def _checked(
    settings: Settings,
    now: datetime,
    threshold: timedelta,
    newest: datetime | None,
    set_aside: SetAside | None,
) -> FreshnessCheck:
    missing = oldest_missing(settings, newest, set_aside)
    waited = None if missing is None else now - as_utc(missing, settings.source_zone)
    return FreshnessCheck(missing, waited, threshold)
