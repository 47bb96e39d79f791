"""The fact checks: per fact, the source's versions and the warehouse's compared as a count
and a checksum each database computes; ids and timestamps leave the source only when they
differ."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from etl import bookkeeping
from etl.load import too_large, waiting
from etl.load.target import Target
from etl.ops.reconcile.verdict import EXAMPLES, Connection, Horizon, TableCheck, Version
from etl.storage import ObjectStore
from etl.tables import REPLICATION_KEY, SOURCE_TABLES, source_table
from etl.transform.batch import open_rejects
from etl.warehouse import FACTS, WarehouseTable


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
    name = fact.sources[0].table
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
