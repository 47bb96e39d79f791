"""Does the warehouse still agree with the source? One check per warehouse table.

The warehouse is compared with what it should hold *as of the last loaded batch*: the
source keeps changing while we look, so a row changed after that batch's watermark (less
the overlap, inside which late commits may still arrive) is left out on both sides. What
remains must agree exactly:

- each dimension (but `dim_date`): the source's current rows remodelled by transform's own
  builders, compared row by row on the natural id with the warehouse's rows;
- each fact: the distinct source ids and the newest version per id, compared as a count
  and an order-independent checksum computed by each database (nothing leaves the source
  unless they differ, and then only ids and timestamps to name examples); plus no version
  held twice in the warehouse;
- `dim_date`: every date a fact refers to is in the calendar.

Versions kept out of the warehouse on purpose are counted apart, not as differences: a
dimension row transform's builders set aside today (an impossible value, etl.transform.
rejects), and a fact version set aside by transform (open in the transform state) or
waiting in the warehouse for its dimension row (etl.load.waiting).

Cost on the source: one scan of each of the 11 tables (the dimension sources are read
whole, the large fact sources only aggregated); nothing is written anywhere.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from etl import bookkeeping
from etl.config import SET_ASIDE, Settings
from etl.csv_format import COPY_OPTIONS, iter_extract, select_expression
from etl.database import connect
from etl.errors import EtlError
from etl.ingest.watermark import Bookmark, IngestState
from etl.load import ledger, too_large, waiting
from etl.load.target import Target
from etl.manifests import ingestion as ingestion_manifest
from etl.storage import ObjectStore
from etl.tables import REPLICATION_KEY, SOURCE_TABLES, source_table
from etl.transform import dimensions
from etl.transform.batch import open_rejects
from etl.transform.rejects import RejectLog
from etl.transform.remodel import TransformState, remodel_dimensions
from etl.warehouse import DIMENSIONS, FACTS, WarehouseTable

Connection = Any  # psycopg.Connection[tuple[Any, ...]]
EXAMPLES = 3  # ids named per differing table

# the source tables whose changes after the cutoff make a dimension row not comparable yet
DIMENSION_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    # dimension: ((source table, the column of the dimension's id in it), ...)
    "dim_location": (("address", "address_id"),),
    "dim_design": (("design", "design_id"),),
    "dim_currency": (("currency", "currency_id"),),
    "dim_payment_type": (("payment_type", "payment_type_id"),),
    "dim_transaction": (("transaction", "transaction_id"),),
    "dim_staff": (("staff", "staff_id"), ("department", "department_id")),
    "dim_counterparty": (("counterparty", "counterparty_id"), ("address", "legal_address_id")),
}
FACT_SOURCE = {"fact_sales_order": "sales_order", "fact_purchase_orders": "purchase_order",
               "fact_payment": "payment"}  # fmt: skip


@dataclass(frozen=True)
class TableCheck:
    """One warehouse table's verdict: counts compared and a few ids that differ."""

    table: str
    source_rows: int
    warehouse_rows: int
    missing: Sequence[
        object
    ] = ()  # in the source, not (or not as the newest version) in the warehouse
    extra: Sequence[object] = ()  # in the warehouse, not in the source
    changed: Sequence[object] = ()  # in both, with other values
    duplicated: Sequence[object] = ()  # a fact version held more than once
    note: str = ""
    set_aside: int = 0  # ids left out because their current version is set aside or waiting

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.duplicated) and (
            self.source_rows == self.warehouse_rows
        )

    def describe(self) -> str:
        counts = f"source {self.source_rows} warehouse {self.warehouse_rows}"
        notes = [self.note] if self.note else []
        if self.set_aside:
            notes.append(f"{self.set_aside} set aside left out (etl status lists them)")
        if self.ok:
            return f"{self.table}: ok ({'; '.join([counts, *notes])})"
        parts = [
            f"{label} ids {_examples(ids)}"
            for label, ids in (
                ("missing", self.missing),
                ("extra", self.extra),
                ("changed", self.changed),
                ("duplicated", self.duplicated),
            )
            if ids
        ]
        return f"{self.table}: DIFFERS ({counts}){': ' + '; '.join(parts) if parts else ''}"


def _examples(ids: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in list(ids)[:EXAMPLES])
    return shown + (f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else "")


@dataclass(frozen=True)
class Reconciliation:
    batch_id: str | None  # the last loaded batch the comparison is as of
    checks: list[TableCheck] = field(default_factory=list)

    @property
    def differing(self) -> list[str]:
        return [check.table for check in self.checks if not check.ok]

    @property
    def ok(self) -> bool:
        return not self.differing


# --- the cutoff -------------------------------------------------------------------------


@dataclass(frozen=True)
class Horizon:
    """What the last loaded batch had extracted of one source table: every version up to its
    watermark, except inside the overlap window behind it, where only the versions the
    bookmark lists as seen are certain (a late commit there arrives with the next batch)."""

    mark: Bookmark
    overlap: timedelta

    @property
    def floor(self) -> datetime | None:
        return None if self.mark.value is None else self.mark.value - self.overlap

    def is_late(self, source_id: int, last_updated: datetime) -> bool:
        """True when the warehouse may not hold this version yet, and cannot be asked to."""
        if self.mark.value is None or self.floor is None:
            return True
        if last_updated > self.mark.value:
            return True
        return last_updated > self.floor and (source_id, last_updated) not in self.mark.seen


def horizons(state: IngestState, overlap: timedelta) -> dict[str, Horizon]:
    return {name: Horizon(state.bookmark(name), overlap) for name in SOURCE_TABLES}


def loaded_state(settings: Settings, ingestion: ObjectStore) -> IngestState:
    """The ingestion state after the newest batch the warehouse holds."""
    with connect(settings.warehouse_db_url, "the warehouse") as conn:
        ledger.ensure_ledger(conn)
        batch_id = ledger.last_loaded(conn)
    if batch_id is None:
        return IngestState()
    manifest = ingestion_manifest.read(ingestion, batch_id)
    if manifest is None:
        raise EtlError(
            f"the warehouse's last batch {batch_id} has no ingestion manifest in "
            f"s3://{ingestion.bucket}; run `python -m etl doctor`"
        )
    return IngestState.from_json(manifest["state_after"])


# --- dimensions -------------------------------------------------------------------------


@contextmanager
def _copied_out(conn: Connection, query: sql.Composed) -> Iterator[BinaryIO]:
    """The CSV of a `COPY ... TO STDOUT`, spooled to a temporary file and rewound: parsing
    from disk holds one block of text in memory, not the whole table's CSV twice."""
    with tempfile.TemporaryFile() as spool:
        with conn.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                spool.write(chunk)
        spool.seek(0)
        yield spool


def _read_source(conn: Connection, name: str) -> pa.Table:
    """A whole source table, typed as transform reads its extracts."""
    table = SOURCE_TABLES[name]
    query = sql.SQL("COPY (SELECT {cols} FROM {t}) TO STDOUT {opts}").format(
        cols=sql.SQL(", ").join(select_expression(c) for c in table.columns),
        t=source_table(name),
        opts=COPY_OPTIONS,
    )
    with _copied_out(conn, query) as csv:
        return pa.concat_tables(iter_extract(cast(io.RawIOBase, csv), table, f"totesys.{name}"))


def _read_warehouse(conn: Connection, target: Target, table: WarehouseTable) -> pa.Table:
    query = sql.SQL("COPY (SELECT {cols} FROM {t}) TO STDOUT {opts}").format(
        cols=target.columns(table), t=target.table(table.name), opts=COPY_OPTIONS
    )
    with _copied_out(conn, query) as csv:
        if not csv.read(1):
            return table.schema.empty_table()
        csv.seek(0)
        return pacsv.read_csv(
            csv,
            read_options=pacsv.ReadOptions(column_names=list(table.columns), skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                column_types=table.schema,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        ).cast(table.schema)


def expected_dimensions(
    source: Mapping[str, pa.Table],
) -> tuple[dict[str, pa.Table], dict[str, set[str]]]:
    """Every dimension but dim_date as transform builds it from the current source rows,
    and per dimension the keys (as text) of the rows transform sets aside."""
    rejects = RejectLog(SET_ASIDE, "reconcile")
    whole, _ = remodel_dimensions(source, TransformState(), rejects)
    whole["dim_transaction"] = dimensions.dim_transaction(source["transaction"], rejects)
    found = rejects.found()
    aside: dict[str, set[str]] = {}
    for table, key in zip(found["table"].to_pylist(), found["key"].to_pylist(), strict=True):
        aside.setdefault(table, set()).add(key)
    return whole, aside


Version = tuple[int, datetime]  # (source id, last_updated)


def set_aside_facts(
    warehouse_conn: Connection, processed: ObjectStore | None
) -> dict[str, set[Version]]:
    """Per fact, the versions kept out on purpose: set aside by transform (still open), too
    large for this warehouse, or waiting in the warehouse for a dimension row."""
    found: dict[str, set[Version]] = {fact.name: set() for fact in FACTS}
    bookkeeping.check(warehouse_conn)  # read only what is the loader's own
    if processed is not None:
        for row in open_rejects(processed).to_pylist():
            if row["table"] in found and row["last_updated"] is not None:
                found[row["table"]].add((int(row["key"]), row["last_updated"]))
    for versions in (waiting.versions(warehouse_conn), too_large.fact_versions(warehouse_conn)):
        for fact, pairs in versions.items():
            found[fact].update((int(key), updated) for key, updated in pairs)
    return found


def _current_versions_kept_out(
    source_conn: Connection, name: str, kept_out: set[Version]
) -> set[int]:
    """The ids whose current source version is one of `kept_out`: only those are left out
    of the comparison (a later, loaded version of the same id is compared as any other)."""
    if not kept_out:
        return set()
    table = SOURCE_TABLES[name]
    query = sql.SQL("SELECT {id}, {lu} FROM {t} WHERE {id} = ANY(%s)").format(
        id=sql.Identifier(table.primary_key),
        lu=sql.Identifier(REPLICATION_KEY),
        t=source_table(name),
    )
    rows = source_conn.execute(query, (sorted({i for i, _ in kept_out}),)).fetchall()
    return {int(i) for i, updated in rows if (int(i), updated) in kept_out}


def set_aside_at_load(warehouse_conn: Connection) -> dict[str, set[str]]:
    """Per dimension, the keys (as text) load set aside as too large for the warehouse."""
    keys: dict[str, set[str]] = {}
    rows = too_large.open_rows(warehouse_conn)
    for table, key in zip(rows["table"].to_pylist(), rows["key"].to_pylist(), strict=True):
        keys.setdefault(table, set()).add(key)
    return keys


def late_ids(name: str, rows: pa.Table, horizon: Horizon) -> set[int]:
    """Ids of a source table whose current version is beyond the horizon."""
    key = SOURCE_TABLES[name].primary_key
    if horizon.floor is not None:  # only the overlap window and later can be late
        rows = rows.filter(pc.greater(rows[REPLICATION_KEY], horizon.floor))
    return {
        source_id
        for source_id, last_updated in zip(
            rows[key].to_pylist(), rows[REPLICATION_KEY].to_pylist(), strict=True
        )
        if horizon.is_late(source_id, last_updated)
    }


def not_comparable(
    dimension: str, source: Mapping[str, pa.Table], horizon: Mapping[str, Horizon]
) -> set[int]:
    """Ids of a dimension whose row, or a parent row it copies, changed beyond the horizon."""
    ids: set[int] = set()
    own_table, own_id = DIMENSION_SOURCES[dimension][0]
    own = source[own_table]
    for table, column in DIMENSION_SOURCES[dimension]:
        late = late_ids(table, source[table], horizon[table])
        if table == own_table:
            ids.update(late)
        else:  # a parent: every own row pointing at a late parent
            parents = pa.array(sorted(late), own.schema.field(column).type)
            ids.update(own.filter(pc.is_in(own[column], value_set=parents))[own_id].to_pylist())
    return ids


def compare_rows(name: str, key: str, expected: pa.Table, actual: pa.Table,
                 skip: set[int]) -> TableCheck:  # fmt: skip
    """One dimension compared on its natural id, leaving out `skip`: an Arrow full outer
    join, so even the largest dimension (dim_transaction) is compared without Python rows."""
    skipped = pa.array(sorted(skip), expected.schema.field(key).type)
    expected = expected.filter(pc.invert(pc.is_in(expected[key], value_set=skipped)))
    actual = actual.filter(pc.invert(pc.is_in(actual[key], value_set=skipped)))
    left = expected.append_column("in_source", pa.repeat(True, expected.num_rows))
    right = actual.append_column("in_warehouse", pa.repeat(True, actual.num_rows))
    joined = left.join(right, keys=key, join_type="full outer", right_suffix="__warehouse")
    in_source = pc.is_valid(joined["in_source"])
    in_warehouse = pc.is_valid(joined["in_warehouse"])
    differs = pa.repeat(False, joined.num_rows)
    for column in expected.column_names:
        if column == key:
            continue
        want, have = joined[column], joined[f"{column}__warehouse"]
        same = pc.or_kleene(pc.equal(want, have), pc.and_(pc.is_null(want), pc.is_null(have)))
        differs = pc.or_(differs, pc.invert(pc.fill_null(same, False)))

    def ids(mask: pa.ChunkedArray | pa.Array) -> list[int]:
        return sorted(joined.filter(mask)[key].to_pylist())

    return TableCheck(
        name,
        expected.num_rows,
        actual.num_rows,
        missing=ids(pc.invert(in_warehouse)),
        extra=ids(pc.invert(in_source)),
        changed=ids(pc.and_(pc.and_(in_source, in_warehouse), differs)),
        note=f"{len(skip)} changed since the last load left out" if skip else "",
    )


def check_dimensions(
    source_conn: Connection,
    warehouse_conn: Connection,
    target: Target,
    horizon: Mapping[str, Horizon],
) -> list[TableCheck]:
    needed = {table for sources in DIMENSION_SOURCES.values() for table, _ in sources}
    source = {name: _read_source(source_conn, name) for name in sorted(needed)}
    expected, aside = expected_dimensions(source)
    for name, keys in set_aside_at_load(warehouse_conn).items():
        aside.setdefault(name, set()).update(keys)
    checks = []
    for table in DIMENSIONS:
        if table.name == "dim_date":
            continue
        actual = _read_warehouse(warehouse_conn, target, table)
        want = expected[table.name].select(list(table.columns)).cast(table.schema)
        skip = not_comparable(table.name, source, horizon)
        kept_out = {int(key) for key in aside.get(table.name, ())} - skip
        check = compare_rows(table.name, table.key[0], want, actual, skip | kept_out)
        if kept_out:
            note = f"{len(skip)} changed since the last load left out" if skip else ""
            check = replace(check, note=note, set_aside=len(kept_out))
        checks.append(check)
    return checks


# --- facts ------------------------------------------------------------------------------

# count and an order-independent checksum: the sum of 64-bit hashes of "id|last_updated"
# (a numeric sum, which never overflows)
_AGGREGATE = sql.SQL(
    "SELECT count(*), coalesce(sum(hashtextextended(v.id::text || '|' || v.ts::text, 0)), 0) "
    "FROM ({}) AS v"
)


def _source_versions(name: str, horizon: Horizon, late: Iterable[int]) -> sql.Composed:
    table = SOURCE_TABLES[name]
    return sql.SQL(
        "SELECT {id} AS id, {lu} AS ts FROM {t} WHERE {lu} <= {limit} AND NOT ({id} = ANY({late}))"
    ).format(
        id=sql.Identifier(table.primary_key),
        lu=sql.Identifier(REPLICATION_KEY),
        t=source_table(name),
        limit=sql.Literal(horizon.mark.value),
        late=sql.Literal(sorted(late)),
    )


def _warehouse_versions(target: Target, fact: WarehouseTable, late: Iterable[int]) -> sql.Composed:
    """The newest version per id, leaving out ids whose source version is beyond the horizon."""
    source_id, date, time = (target.column(fact.name, c) for c in fact.key)
    return sql.SQL(
        "SELECT {id} AS id, max({d} + {t}) AS ts FROM {table} "
        "WHERE NOT ({id} = ANY({late})) GROUP BY {id}"
    ).format(
        id=source_id, d=date, t=time, table=target.table(fact.name), late=sql.Literal(sorted(late))
    )


def _aggregate(conn: Connection, versions: sql.Composed) -> tuple[int, int]:
    row = conn.execute(_AGGREGATE.format(versions)).fetchone()
    return int(row[0]), int(row[1])


def _late_fact_ids(conn: Connection, name: str, horizon: Horizon) -> set[int]:
    """Beyond the horizon: read only the overlap window and later from the source."""
    table = SOURCE_TABLES[name]
    query = sql.SQL("SELECT {id}, {lu} FROM {t}{where}").format(
        id=sql.Identifier(table.primary_key),
        lu=sql.Identifier(REPLICATION_KEY),
        t=source_table(name),
        where=sql.SQL("")
        if horizon.floor is None
        else sql.SQL(" WHERE {lu} > {floor}").format(
            lu=sql.Identifier(REPLICATION_KEY), floor=sql.Literal(horizon.floor)
        ),
    )
    return {source_id for source_id, ts in conn.execute(query) if horizon.is_late(source_id, ts)}


def _duplicated(conn: Connection, target: Target, fact: WarehouseTable) -> list[int]:
    key = target.columns(fact, fact.key)
    query = sql.SQL(
        "SELECT DISTINCT {id} FROM {table} GROUP BY {key} HAVING count(*) > 1 ORDER BY 1 LIMIT {n}"
    ).format(
        id=target.column(fact.name, fact.key[0]),
        table=target.table(fact.name),
        key=key,
        n=sql.Literal(EXAMPLES + 1),
    )
    return [row[0] for row in conn.execute(query)]


def check_fact(
    source_conn: Connection,
    warehouse_conn: Connection,
    target: Target,
    fact: WarehouseTable,
    horizon: Horizon,
    set_aside: set[Version] | None = None,
) -> TableCheck:
    name = FACT_SOURCE[fact.name]
    changed_late = _late_fact_ids(source_conn, name, horizon)
    late = changed_late | _current_versions_kept_out(source_conn, name, set_aside or set())
    kept_out = len(late) - len(changed_late)
    duplicated = _duplicated(warehouse_conn, target, fact)
    note = f"{len(changed_late)} changed since the last load left out" if changed_late else ""
    if horizon.mark.value is None:
        source_count, source_sum = 0, 0
        source_versions = None
    else:
        source_versions = _source_versions(name, horizon, late)
        source_count, source_sum = _aggregate(source_conn, source_versions)
    warehouse_versions = _warehouse_versions(target, fact, late)
    warehouse_count, warehouse_sum = _aggregate(warehouse_conn, warehouse_versions)
    if (source_count, source_sum) == (warehouse_count, warehouse_sum):
        return TableCheck(fact.name, source_count, warehouse_count, duplicated=duplicated,
                          note=note, set_aside=kept_out)  # fmt: skip
    # they differ: fetch the versions (ids and timestamps only) to name examples
    want = (
        dict(source_conn.execute(source_versions).fetchall()) if source_versions is not None else {}
    )
    have = dict(warehouse_conn.execute(warehouse_versions).fetchall())
    return TableCheck(
        fact.name,
        source_count,
        warehouse_count,
        missing=sorted(k for k in want if k not in have or have[k] < want[k]),
        extra=sorted(k for k in have if k not in want),
        changed=sorted(k for k in have if k in want and have[k] > want[k]),
        duplicated=duplicated,
        note=note,
        set_aside=kept_out,
    )


def check_calendar(warehouse_conn: Connection, target: Target) -> TableCheck:
    """dim_date holds every date a fact refers to (dates are not in the source as such)."""
    date_id = target.column("dim_date", "date_id")
    referenced = sql.SQL(" UNION ").join(
        sql.SQL("SELECT {c} AS d FROM {t}").format(
            c=target.column(fact.name, column), t=target.table(fact.name)
        )
        for fact in FACTS
        for column in fact.schema.names
        if fact.schema.field(column).type == pa.date32()
    )
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM {dim}), r.d FROM ({refs}) AS r "
        "WHERE r.d IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {dim} WHERE {id} = r.d) ORDER BY 2"
    ).format(dim=target.table("dim_date"), refs=referenced, id=date_id)
    rows = warehouse_conn.execute(query).fetchall()
    count = warehouse_conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(target.table("dim_date"))
    ).fetchone()[0]
    missing = [d.isoformat() for _, d in rows]
    return TableCheck("dim_date", count + len(missing), count, missing=missing,
                      note="the calendar of every fact date")  # fmt: skip


def reconcile(
    settings: Settings, ingestion: ObjectStore, processed: ObjectStore | None = None
) -> Reconciliation:
    """Compare the warehouse with the source as of the last loaded batch; with `processed`,
    the fact versions transform set aside are counted apart too."""
    settings.require("totesys_db_url", "warehouse_db_url", "ingestion_bucket")
    state = loaded_state(settings, ingestion)
    horizon = horizons(state, settings.overlap)
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    with (
        connect(settings.totesys_db_url, "totesys") as source_conn,
        connect(settings.warehouse_db_url, "the warehouse") as warehouse_conn,
    ):
        source_conn.read_only = True
        checks = check_dimensions(source_conn, warehouse_conn, target, horizon)
        checks.append(check_calendar(warehouse_conn, target))
        aside = set_aside_facts(warehouse_conn, processed)
        checks += [
            check_fact(
                source_conn,
                warehouse_conn,
                target,
                fact,
                horizon[FACT_SOURCE[fact.name]],
                aside[fact.name],
            )
            for fact in FACTS
        ]
    return Reconciliation(state.batch_id, checks)
