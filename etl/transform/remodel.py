"""One ingested batch -> the warehouse rows it implies, given the state before it.

Pure: Arrow tables in, Arrow tables out. What is built from which source, and by which
builder, is read from the declarations in etl/warehouse.py. The state is the compacted
current state of the sources of the joined dimensions (STATEFUL_TABLES: staff,
department, counterparty, address) and, per fact, the newest version already emitted for
each source id. With it a batch never needs the ingestion history:

- an `address` change refreshes `dim_location` and every `dim_counterparty` on that address;
- a `department` change refreshes every `dim_staff` in it;
- a fact version at or before the one already emitted for its id (an overlap re-read, a
  full refresh) is dropped, so facts hold each version exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import pyarrow as pa
import pyarrow.compute as pc

from etl.csv_format import ARROW_TYPES
from etl.tables import SOURCE_TABLES
from etl.transform import dim_date, dimensions, facts
from etl.transform.rejects import RejectLog, empty
from etl.transform.versions import (
    VERSION_SCHEMA,
    emitted_after,
    fresh_versions,
    latest_versions,
    merge_current,
    version_marks,
)
from etl.warehouse import DIMENSIONS, FACTS, WAREHOUSE_TABLES, WarehouseTable

# The modules a declaration's builder ("module.function", etl/warehouse.py) may name.
BUILDER_MODULES: dict[str, ModuleType] = {
    "dimensions": dimensions,
    "facts": facts,
    "dim_date": dim_date,
}
# A builder takes the rows of each declared source, in order, and the reject log
# (dim_date, which has no source, takes the fact dates instead).
Builder = Callable[..., pa.Table]


def _resolve(name: str) -> Builder:
    module, function = name.split(".")
    built: Builder = getattr(BUILDER_MODULES[module], function)
    return built


# Every warehouse table's builder, resolved once: a declaration naming no function fails here.
BUILDERS: dict[str, Builder] = {t.name: _resolve(t.builder) for t in WAREHOUSE_TABLES.values()}

# The dimensions built from their sources' current rows held whole, the independent ones
# first, then those that copy a parent's columns in.
WHOLE_DIMENSIONS: tuple[WarehouseTable, ...] = tuple(
    sorted((t for t in DIMENSIONS if t.sources and not t.row_wise), key=lambda t: bool(t.parents))
)
# The sources of every joined dimension: their compacted current state is kept between
# batches, so a parent's change reaches children that did not change themselves.
STATEFUL_TABLES: tuple[str, ...] = tuple(
    dict.fromkeys(s.table for t in WHOLE_DIMENSIONS if t.parents for s in t.sources)
)
# fact source -> (the fact built from it, its builder)
FACT_SOURCES: dict[str, tuple[str, Builder]] = {
    fact.sources[0].table: (fact.name, BUILDERS[fact.name]) for fact in FACTS
}
# each output row comes from one source row, so these are read and remodelled in chunks:
# source -> the table built from it
ROW_WISE_TARGETS: dict[str, WarehouseTable] = {
    t.sources[0].table: t for t in WAREHOUSE_TABLES.values() if t.row_wise
}
ROW_WISE_SOURCES: tuple[str, ...] = tuple(ROW_WISE_TARGETS)


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


def build_whole(
    table: WarehouseTable,
    changes: Mapping[str, pa.Table],
    current: Mapping[str, pa.Table],
    rejects: RejectLog | None,
) -> pa.Table:
    """One whole-source dimension's rows for a batch's `changes`: an independent one from
    its own changed rows; a joined one for every current row that changed or points at a
    changed parent, with the parents' current state to copy columns from."""
    if not table.parents:
        return BUILDERS[table.name](changes[table.sources[0].table], rejects)
    own = table.sources[0]
    rows = current[own.table]
    affected = pc.is_in(rows.column(own.via), value_set=_ids(changes[own.table], own.via))
    for parent in table.parents:
        changed = _ids(changes[parent.table], SOURCE_TABLES[parent.table].primary_key)
        affected = pc.or_(affected, pc.is_in(rows.column(parent.via), value_set=changed))
    parents = [current[parent.table] for parent in table.parents]
    return BUILDERS[table.name](rows.filter(affected), *parents, rejects)


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
    out = {table.name: build_whole(table, changes, current, rejects) for table in WHOLE_DIMENSIONS}
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
        target = ROW_WISE_TARGETS[source]
        if target.kind == "dim":
            latest = latest_versions(chunk, key)
            return target.name, BUILDERS[target.name](latest, self.rejects)
        fresh = fresh_versions(chunk, key, self.state.emitted_of(source))
        # a version set aside is marked emitted too: a re-read of it is not new
        self.marks.setdefault(source, []).append(version_marks(fresh, key))
        out = BUILDERS[target.name](fresh, self.rejects)
        self.dates += [pc.unique(out.column(c).combine_chunks()) for c in target.date_columns]
        return target.name, out

    def dim_date(self) -> pa.Table:
        return BUILDERS["dim_date"](self.dates)

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
