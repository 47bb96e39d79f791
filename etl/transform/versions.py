"""Row versions: keeping the newest per key, and only versions newer than those emitted."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from etl.errors import DataError
from etl.tables import REPLICATION_KEY

VERSION_SCHEMA = pa.schema(
    [pa.field("id", pa.int64()), pa.field(REPLICATION_KEY, pa.timestamp("ms"))]
)


def _first_of_each(table: pa.Table, group: list[str], newest_first: bool) -> pa.Table:
    """Sort by `group` then last_updated, and keep the first row of each `group` run."""
    if table.num_rows <= 1:
        return table
    direction = "descending" if newest_first else "ascending"
    order = pc.sort_indices(
        table, sort_keys=[*((c, "ascending") for c in group), (REPLICATION_KEY, direction)]
    )
    ordered = table.take(order)
    n = ordered.num_rows
    starts = None
    for column in group:
        values = ordered.column(column).combine_chunks()
        differs = pc.not_equal(values.slice(1), values.slice(0, n - 1))
        starts = differs if starts is None else pc.or_(starts, differs)
    return ordered.filter(pa.concat_arrays([pa.array([True]), starts]))


def latest_versions(table: pa.Table, key: str) -> pa.Table:
    """One row per `key`: the one with the highest last_updated (SCD1 current state)."""
    return _first_of_each(table, [key], newest_first=True)


def merge_current(current: pa.Table, changes: pa.Table, key: str) -> pa.Table:
    """The current state after applying `changes` (same schema). On a last_updated tie the
    change wins: it comes from a later snapshot of the source (the sort is stable)."""
    if changes.num_rows == 0:
        return current
    return latest_versions(pa.concat_tables([changes.cast(current.schema), current]), key)


def distinct_versions(table: pa.Table, key: str) -> pa.Table:
    """Drop exact repeats of a (key, last_updated) version, keeping distinct versions."""
    return _first_of_each(table, [key, REPLICATION_KEY], newest_first=False)


def fresh_versions(table: pa.Table, key: str, emitted: pa.Table) -> pa.Table:
    """The versions newer than the newest already emitted for their key.

    A row's versions only move forward in time, so anything at or before the emitted
    version of its key was delivered before (an overlap re-read or a full refresh).
    """
    table = distinct_versions(table, key)
    if table.num_rows == 0:
        return table
    ids = table.column(key).cast(pa.int64())
    marks = pa.table({"id": ids, "_row": pa.array(range(table.num_rows), pa.int64())})
    joined = marks.join(emitted, keys="id", join_type="left outer")
    joined = joined.sort_by("_row")
    emitted_at = joined.column(REPLICATION_KEY)
    newer = pc.or_kleene(
        pc.is_null(emitted_at), pc.greater(table.column(REPLICATION_KEY), emitted_at)
    )
    return table.filter(pc.fill_null(newer, True))


def version_marks(rows: pa.Table, key: str) -> pa.Table:
    """(id, last_updated) of each row: what the emitted state records."""
    return pa.table(
        {"id": rows.column(key).cast(pa.int64()), REPLICATION_KEY: rows.column(REPLICATION_KEY)},
        schema=VERSION_SCHEMA,
    )


def emitted_after(emitted: pa.Table, marks: list[pa.Table], source: str) -> pa.Table:
    """The emitted state once `marks` (from one extract, read in chunks) are delivered.

    Chunks of one extract are each checked against the state before the extract, which is
    right because a snapshot holds each key once; a version in two chunks would be
    delivered twice, so it is refused here, before anything is published.
    """
    if not marks:
        return emitted
    delivered = pa.concat_tables(marks)
    distinct = delivered.group_by(["id", REPLICATION_KEY]).aggregate([]).num_rows
    if distinct != delivered.num_rows:
        raise DataError(
            f"{source}: the extract holds {delivered.num_rows - distinct} repeated row version(s)"
        )
    return merge_current(emitted, delivered, "id")
