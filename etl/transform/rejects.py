"""Rows set aside: a source row version that cannot become a warehouse row.

One impossible date, a currency code that is not ISO 4217, a NULL where the warehouse
requires a value: under the `set_aside` policy (the default) such a row is kept out of the
warehouse with its table, key, last_updated, column, value and reason, and every other row
flows on. Under `fail` the first one stops the batch (the behaviour before set-aside
existed, for teams that want a hard stop).

A set-aside row stays *open* until a later batch builds a row for the same warehouse key
(the source row corrected with a newer last_updated, or a dimension rebuilt once its parent
is fixed). The open ones live in the transform state, so a re-read of the same version (an
overlap, a full refresh, a backfill) is recognised and not set aside, counted or reported
twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from etl.config import FAIL, SET_ASIDE
from etl.errors import DataError

__all__ = ["FAIL", "REJECT_SCHEMA", "SET_ASIDE", "Problem", "RejectLog", "open_identities"]

# One row per set-aside warehouse row (the first column that failed); also the schema of
# the rejects area's parquet files (docs/architecture.md, "Rejects").
REJECT_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),  # the warehouse table
        pa.field("key_column", pa.string(), nullable=False),  # its natural key column
        pa.field("key", pa.string(), nullable=False),  # that key's value, as text
        pa.field("last_updated", pa.timestamp("ms")),  # the source version set aside
        pa.field("column", pa.string(), nullable=False),  # the warehouse column at fault
        pa.field("value", pa.string()),  # the offending value as text (NULL for a NULL)
        pa.field("reason", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),  # the batch that set it aside
    ]
)
IDENTITY = ("table", "key", "last_updated")  # one version of one warehouse row


@dataclass(frozen=True)
class Problem:
    """Rows of one column that fail for a reason found before conforming (a lookup, a join)."""

    column: str
    mask: pa.Array  # bool: True where the row fails
    reason: pa.Array  # string: why, per row (only read where `mask` is True)


@dataclass
class RejectLog:
    """What one batch set aside. Under `fail` the first problem raises a DataError naming
    table, column, reason and key instead."""

    policy: str = FAIL
    batch_id: str = ""
    # (table, key, last_updated) of the rows already set aside and still open: re-read
    # (an overlap, a sweep, a full refresh) they are not new, so not a reason to fail
    already_open: frozenset[tuple[str, str, object]] = frozenset()
    parts: list[pa.Table] = field(default_factory=list)
    built: dict[str, list[pa.Array]] = field(default_factory=dict)

    def add(
        self,
        table: str,
        key_column: str,
        columns: Mapping[str, pa.Array],
        column: str,
        mask: pa.Array,
        reason: pa.Array | str,
    ) -> None:
        """Set aside the rows of `columns` where `mask` is True, blaming `column`."""
        if not pc.any(mask).as_py():  # the common case: nothing to set aside, nothing built
            return
        rows = pc.indices_nonzero(mask)
        keys = pc.cast(columns[key_column].take(rows), pa.string())
        reasons = (
            pa.array([reason] * len(rows), pa.string())
            if isinstance(reason, str)
            else reason.take(rows)
        )
        values = columns.get(column)
        updated = columns.get("last_updated")
        if self.policy == FAIL:
            self._fail_unless_open(table, column, key_column, keys, reasons, updated, rows)
        n = len(rows)
        self.parts.append(
            pa.Table.from_arrays(
                [
                    pa.array([table] * n, pa.string()),
                    pa.array([key_column] * n, pa.string()),
                    keys,
                    pa.nulls(n, pa.timestamp("ms"))
                    if updated is None
                    else pc.cast(updated.take(rows), pa.timestamp("ms")),
                    pa.array([column] * n, pa.string()),
                    pa.nulls(n, pa.string())
                    if values is None
                    else pc.cast(values.take(rows), pa.string()),
                    pc.cast(reasons, pa.string()),
                    pa.array([self.batch_id] * n, pa.string()),
                ],
                schema=REJECT_SCHEMA,
            )
        )

    def _fail_unless_open(
        self,
        table: str,
        column: str,
        key_column: str,
        keys: pa.Array,
        reasons: pa.Array,
        updated: pa.Array | None,
        rows: pa.Array,
    ) -> None:
        times = (
            [None] * len(keys)
            if updated is None
            else pc.cast(updated.take(rows), pa.timestamp("ms")).to_pylist()
        )
        for key, why, when in zip(keys.to_pylist(), reasons.to_pylist(), times, strict=True):
            if (table, key, when) not in self.already_open:
                raise DataError(f"{table}.{column}: {why} ({key_column} {key})")

    def record_built(self, table: str, keys: pa.Array | pa.ChunkedArray) -> None:
        """Keys of rows that were built: they close an open set-aside row of the same key."""
        if len(keys):
            self.built.setdefault(table, []).append(pc.cast(_array(keys), pa.string()))

    def found(self) -> pa.Table:
        return pa.concat_tables([REJECT_SCHEMA.empty_table(), *self.parts])

    def settle(self, open_before: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(this batch's new set-aside rows, the open ones after the batch).

        New: found now and not already open with the same version. Open after: the open
        ones whose key was not built now, plus the new ones."""
        found = _distinct(self.found())
        new = found.filter(pc.invert(_member(found, open_before)))
        still_open = open_before.filter(pc.invert(self._built_mask(open_before)))
        return new, pa.concat_tables([still_open, new])

    def _built_mask(self, rows: pa.Table) -> pa.Array:
        mask = pa.repeat(False, rows.num_rows)
        for table, keys in self.built.items():
            in_table = pc.equal(rows.column("table"), table)
            built = pc.is_in(rows.column("key"), value_set=pa.concat_arrays(keys))
            mask = pc.or_(mask, pc.and_(in_table, built))
        return mask


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _identity(rows: pa.Table) -> pa.Array:
    """One text per version of one warehouse row: table, key and last_updated."""
    updated = pc.fill_null(pc.cast(rows.column("last_updated"), pa.string()), "")
    return pc.binary_join_element_wise(rows.column("table"), rows.column("key"), updated, "\x1f")


def _member(rows: pa.Table, of: pa.Table) -> pa.Array:
    if rows.num_rows == 0 or of.num_rows == 0:
        return pa.repeat(False, rows.num_rows)
    return pc.is_in(_identity(rows), value_set=_array(_identity(of)))


def _distinct(rows: pa.Table) -> pa.Table:
    """The first row of each identity: chunks of one extract may repeat a version."""
    if rows.num_rows <= 1:
        return rows
    seen: set[str] = set()
    keep = []
    for value in _array(_identity(rows)).to_pylist():
        keep.append(value not in seen)
        seen.add(value)
    return rows.filter(pa.array(keep, pa.bool_()))


def open_identities(rows: pa.Table) -> frozenset[tuple[str, str, object]]:
    """(table, key, last_updated) of each open set-aside row (RejectLog.already_open)."""
    return frozenset(
        (r["table"], r["key"], r["last_updated"])
        for r in rows.select(["table", "key", "last_updated"]).to_pylist()
    )


def empty() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def summary(rows: pa.Table) -> dict[str, int]:
    """Set-aside rows per warehouse table."""
    counts: dict[str, int] = {}
    for table in rows.column("table").to_pylist():
        counts[table] = counts.get(table, 0) + 1
    return counts


def describe(rows: pa.Table, limit: int = 50) -> list[str]:
    """One line per set-aside row (at most `limit`, then how many more), for emails and
    `etl status`."""
    lines = [
        f"{r['table']} {r['key_column']}={r['key']} (last_updated {r['last_updated']}):"
        f" {r['column']} = {r['value']!r}: {r['reason']}"
        for r in rows.slice(0, limit).to_pylist()
    ]
    if rows.num_rows > limit:
        lines.append(f"... and {rows.num_rows - limit} more")
    return lines
