"""One ingested batch -> the warehouse rows it implies, given the state before it.

Pure: Arrow tables in, Arrow tables out. The state is the compacted current state of the
four tables that other dimensions join to (address, department, staff, counterparty) and,
per fact, the newest version already emitted for each source id. With it a batch never
needs the ingestion history:

- an `address` change refreshes `dim_location` and every `dim_counterparty` on that address;
- a `department` change refreshes every `dim_staff` in it;
- a fact version at or before the one already emitted for its id (an overlap re-read, a
  full refresh) is dropped, so facts hold each version exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from etl.csv_format import ARROW_TYPES
from etl.tables import SOURCE_TABLES
from etl.transform import dimensions, facts
from etl.transform.dim_date import dim_date
from etl.transform.rejects import RejectLog, empty
from etl.transform.versions import (
    VERSION_SCHEMA,
    emitted_after,
    fresh_versions,
    latest_versions,
    merge_current,
    version_marks,
)

STATEFUL_TABLES = ("address", "department", "staff", "counterparty")
FACT_SOURCES = {
    "sales_order": ("fact_sales_order", facts.fact_sales_order),
    "purchase_order": ("fact_purchase_orders", facts.fact_purchase_orders),
    "payment": ("fact_payment", facts.fact_payment),
}
# each output row comes from one source row, so these are read and remodelled in chunks
ROW_WISE_SOURCES = ("transaction", *FACT_SOURCES)


def source_schema(table: str) -> pa.Schema:
    """The typed shape `csv_format.read_extract` gives a source table (NOT NULL is checked there)."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in SOURCE_TABLES[table].columns])


def empty_source(table: str) -> pa.Table:
    return source_schema(table).empty_table()


@dataclass(frozen=True)
class TransformState:
    current: Mapping[str, pa.Table] = field(default_factory=dict)  # STATEFUL_TABLES
    emitted: Mapping[str, pa.Table] = field(
        default_factory=dict
    )  # FACT_SOURCES: (id, last_updated)
    # the set-aside rows no later batch has built a row for (rejects.REJECT_SCHEMA)
    rejected: pa.Table = field(default_factory=empty)

    def current_of(self, table: str) -> pa.Table:
        return self.current.get(table) or empty_source(table)

    def emitted_of(self, table: str) -> pa.Table:
        return self.emitted.get(table) or VERSION_SCHEMA.empty_table()


def _ids(rows: pa.Table, column: str) -> pa.Array:
    return (
        pc.unique(rows.column(column).combine_chunks())
        if rows.num_rows
        else pa.array([], pa.int64())
    )


def remodel_dimensions(
    batch: Mapping[str, pa.Table], state: TransformState, rejects: RejectLog | None = None
) -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    """(the dimensions a batch changes, the current state after it), for every dimension
    whose source is small enough to hold whole; the row-wise tables are RowRemodel's."""
    changes = {
        name: latest_versions(
            batch.get(name) or empty_source(name), SOURCE_TABLES[name].primary_key
        )
        for name in SOURCE_TABLES
        if name not in ROW_WISE_SOURCES
    }
    current = {name: merge_current(state.current_of(name), changes[name], SOURCE_TABLES[name].primary_key)
               for name in STATEFUL_TABLES}  # fmt: skip

    out: dict[str, pa.Table] = {
        "dim_location": dimensions.dim_location(changes["address"], rejects),
        "dim_design": dimensions.dim_design(changes["design"], rejects),
        "dim_currency": dimensions.dim_currency(changes["currency"], rejects),
        "dim_payment_type": dimensions.dim_payment_type(changes["payment_type"], rejects),
    }
    counterparties = current["counterparty"]
    affected = pc.or_(
        pc.is_in(
            counterparties.column("counterparty_id"),
            value_set=_ids(changes["counterparty"], "counterparty_id"),
        ),
        pc.is_in(
            counterparties.column("legal_address_id"),
            value_set=_ids(changes["address"], "address_id"),
        ),
    )
    out["dim_counterparty"] = dimensions.dim_counterparty(
        counterparties.filter(affected), current["address"], rejects
    )
    staff = current["staff"]
    affected = pc.or_(
        pc.is_in(staff.column("staff_id"), value_set=_ids(changes["staff"], "staff_id")),
        pc.is_in(
            staff.column("department_id"), value_set=_ids(changes["department"], "department_id")
        ),
    )
    out["dim_staff"] = dimensions.dim_staff(staff.filter(affected), current["department"], rejects)
    return out, current


@dataclass
class RowRemodel:
    """The tables built row by row from the large sources (transaction and the three fact
    sources), fed one chunk of an extract at a time so memory never holds a whole table.
    Chunks are checked against the emitted versions from before the batch."""

    state: TransformState
    rejects: RejectLog | None = None
    marks: dict[str, list[pa.Table]] = field(default_factory=dict)
    dates: list[pa.Array] = field(default_factory=list)

    def rows(self, source: str, chunk: pa.Table) -> tuple[str, pa.Table]:
        """(warehouse table, its rows implied by this chunk of `source`)."""
        key = SOURCE_TABLES[source].primary_key
        if source == "transaction":
            latest = latest_versions(chunk, key)
            return "dim_transaction", dimensions.dim_transaction(latest, self.rejects)
        target, build = FACT_SOURCES[source]
        fresh = fresh_versions(chunk, key, self.state.emitted_of(source))
        # a version set aside is marked emitted too: a re-read of it is not new
        self.marks.setdefault(source, []).append(version_marks(fresh, key))
        out = build(fresh, self.rejects)
        self.dates += [
            pc.unique(out.column(c).combine_chunks()) for c in facts.FACT_DATE_COLUMNS[target]
        ]
        return target, out

    def dim_date(self) -> pa.Table:
        return dim_date(self.dates)

    def emitted(self) -> dict[str, pa.Table]:
        return {
            source: emitted_after(self.state.emitted_of(source), self.marks.get(source, []), source)
            for source in FACT_SOURCES
        }


def remodel(
    batch: Mapping[str, pa.Table], state: TransformState, rejects: RejectLog | None = None
) -> tuple[dict[str, pa.Table], TransformState]:
    """Warehouse rows for one batch held whole (only tables with rows) and the state after
    (its open set-aside rows settled when `rejects` is given)."""
    out, current = remodel_dimensions(batch, state, rejects)
    row_wise = RowRemodel(state, rejects)
    for source in ROW_WISE_SOURCES:
        target, rows = row_wise.rows(source, batch.get(source) or empty_source(source))
        out[target] = rows
    out["dim_date"] = row_wise.dim_date()
    produced = {name: table for name, table in out.items() if table.num_rows}
    rejected = state.rejected if rejects is None else rejects.settle(state.rejected)[1]
    return produced, TransformState(current, row_wise.emitted(), rejected)
