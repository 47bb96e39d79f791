"""The dimension checks: each sourced dimension rebuilt by transform's own builders from
the source's current rows and compared row by row; dim_date against the facts' dates."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import BinaryIO, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from etl.config import SET_ASIDE
from etl.csv_format import COPY_OPTIONS, iter_extract, select_expression
from etl.load import too_large
from etl.load.target import Target
from etl.ops.reconcile.verdict import Connection, Horizon, TableCheck
from etl.tables import REPLICATION_KEY, SOURCE_TABLES, source_table
from etl.transform.rejects import RejectLog
from etl.transform.remodel import BUILDERS, TransformState, remodel_dimensions
from etl.warehouse import DIMENSIONS, FACTS, WarehouseTable

# every dimension but dim_date, which has no source
SOURCED: tuple[WarehouseTable, ...] = tuple(t for t in DIMENSIONS if t.sources)


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
    for dimension in SOURCED:
        if dimension.row_wise:  # not remodel_dimensions': transform reads its source in chunks
            own = source[dimension.sources[0].table]
            whole[dimension.name] = BUILDERS[dimension.name](own, rejects)
    found = rejects.found()
    aside: dict[str, set[str]] = {}
    for table, key in zip(found["table"].to_pylist(), found["key"].to_pylist(), strict=True):
        aside.setdefault(table, set()).add(key)
    return whole, aside


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
    dimension: WarehouseTable, source: Mapping[str, pa.Table], horizon: Mapping[str, Horizon]
) -> set[int]:
    """Ids of a dimension whose row, or a parent row it copies, changed beyond the horizon."""
    own_table, own_id = dimension.sources[0].table, dimension.sources[0].via
    own = source[own_table]
    ids = late_ids(own_table, own, horizon[own_table])
    for parent in dimension.parents:  # every own row pointing at a late parent
        late = late_ids(parent.table, source[parent.table], horizon[parent.table])
        parents = pa.array(sorted(late), own.schema.field(parent.via).type)
        ids.update(own.filter(pc.is_in(own[parent.via], value_set=parents))[own_id].to_pylist())
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
    needed = {source.table for table in SOURCED for source in table.sources}
    source = {name: _read_source(source_conn, name) for name in sorted(needed)}
    expected, aside = expected_dimensions(source)
    for name, keys in set_aside_at_load(warehouse_conn).items():
        aside.setdefault(name, set()).update(keys)
    checks = []
    for table in SOURCED:
        actual = _read_warehouse(warehouse_conn, target, table)
        want = expected[table.name].select(list(table.columns)).cast(table.schema)
        skip = not_comparable(table, source, horizon)
        kept_out = {int(key) for key in aside.get(table.name, ())} - skip
        check = compare_rows(table.name, table.key[0], want, actual, skip | kept_out)
        if kept_out:
            note = f"{len(skip)} changed since the last load left out" if skip else ""
            check = replace(check, note=note, set_aside=len(kept_out))
        checks.append(check)
    return checks


def check_calendar(warehouse_conn: Connection, target: Target) -> TableCheck:
    """dim_date holds every date a fact refers to (dates are not in the source as such)."""
    date_id = target.column("dim_date", "date_id")
    referenced = sql.SQL(" UNION ").join(
        sql.SQL("SELECT {c} AS d FROM {t}").format(
            c=target.column(fact.name, column), t=target.table(fact.name)
        )
        for fact in FACTS
        for column in fact.date_columns
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
