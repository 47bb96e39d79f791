"""What one transformed batch publishes, computed from its extracted tables: no I/O.

From the ingestion manifest, the extracted tables (whole for the small sources, chunk by
chunk for the row-wise ones) and the previous snapshot, this gives the warehouse tables of
the batch, the rows it sets aside, the next snapshot, and the key of every object the
batch writes. Reading the extracts and writing the files is etl.transform.batch's and
etl.transform.publish's; the rules here are tested with plain Arrow tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from etl import layout
from etl.errors import EtlError
from etl.manifests.ingestion import IngestionManifest
from etl.tables import SOURCE_TABLES
from etl.transform import rejects as rejects_log
from etl.transform.remodel import (
    FACT_SOURCES,
    ROW_WISE_SOURCES,
    STATEFUL_TABLES,
    RowRemodel,
    TransformState,
    remodel_dimensions,
)
from etl.transform.spool import ParquetSpool
from etl.warehouse import WAREHOUSE_TABLES

STATE_KEY = "_state/transform.json"
SNAPSHOT_PREFIX = "_state/snapshots/"
REJECTED_SNAPSHOT = "rejected_open"  # the open set-aside rows; optional (older snapshots lack it)


def output_key(table: str, batch_id: str, attempt: int | None = None) -> str:
    """`attempt` is the writer's lease generation (see layout.extract_key)."""
    return layout.data_key(table, batch_id, "parquet", attempt)


def snapshot_key(batch_id: str, name: str) -> str:
    """The key of one object of the state snapshot after `batch_id`."""
    return f"{SNAPSHOT_PREFIX}{batch_id}/{name}.parquet"


def snapshot_names() -> list[str]:
    """The objects every state snapshot has: transform writes them, doctor checks and
    rebuilds them (and REJECTED_SNAPSHOT, which older snapshots lack)."""
    return [*STATEFUL_TABLES, *(f"emitted_{name}" for name in FACT_SOURCES)]


def snapshot_tables(state: TransformState) -> dict[str, pa.Table]:
    """The objects of one state snapshot (snapshot_names(), then the open set-aside rows)."""
    return {
        **state.current,
        **{f"emitted_{name}": table for name, table in state.emitted.items()},
        REJECTED_SNAPSHOT: state.rejected,
    }


def check_tables(manifest: IngestionManifest) -> None:
    unknown = [name for name in manifest["tables"] if name not in SOURCE_TABLES]
    if unknown:
        raise EtlError(
            f"ingestion manifest {manifest['batch_id']} names unknown table {unknown[0]!r}"
        )


def small_sources(manifest: IngestionManifest) -> list[str]:
    """The sources of the batch remodelled whole (every one but the row-wise ones)."""
    return [name for name in manifest["tables"] if name not in ROW_WISE_SOURCES]


@dataclass(frozen=True)
class Remodelled:
    """The small warehouse tables of a batch (dim_date included), the state after it and
    the rows it newly set aside (rejects.REJECT_SCHEMA)."""

    outputs: dict[str, pa.Table]
    state_after: TransformState
    rejected: pa.Table


class BatchRemodel:
    """One batch remodelled from the state before it, fed its small sources whole
    (`small`), then its row-wise sources a chunk at a time (`rows`, which returns the
    warehouse rows at once so the caller can spool them), then `finish`ed."""

    def __init__(self, manifest: IngestionManifest, state: TransformState, policy: str) -> None:
        check_tables(manifest)
        self.state = state
        self.rejects = rejects_log.RejectLog(
            policy, manifest["batch_id"], rejects_log.open_identities(state.rejected)
        )
        self.outputs: dict[str, pa.Table] = {}
        self.current = state.current
        self.row_wise = RowRemodel(state, self.rejects)

    def small(self, tables: dict[str, pa.Table]) -> None:
        """The dimensions of the batch's small sources (those with rows in `tables`)."""
        self.outputs, self.current = remodel_dimensions(tables, self.state, self.rejects)

    def rows(self, source: str, chunk: pa.Table) -> tuple[str, pa.Table]:
        """(warehouse table, its rows from this chunk of a row-wise source)."""
        return self.row_wise.rows(source, chunk)

    def finish(self) -> Remodelled:
        outputs = {**self.outputs, "dim_date": self.row_wise.dim_date()}
        new, still_open = self.rejects.settle(self.state.rejected)
        state_after = TransformState(self.current, self.row_wise.emitted(), still_open)
        return Remodelled(outputs, state_after, new)


@dataclass
class BuiltBatch:
    """One batch remodelled, nothing published yet: the row-wise tables in local spools,
    the small ones in memory, the state after it and the rows it newly set aside."""

    batch_id: str
    spools: dict[str, ParquetSpool]
    outputs: dict[str, pa.Table]
    state_after: TransformState
    rejected: pa.Table  # rejects.REJECT_SCHEMA: set aside by this batch, not seen before

    def table_data(self, name: str) -> ParquetSpool | pa.Table | None:
        """What the batch has for one warehouse table, None when it has no rows."""
        if name in self.spools and self.spools[name].rows:
            return self.spools[name]
        table = self.outputs.get(name)
        return table if table is not None and table.num_rows else None


def set_aside_tables(rejected: pa.Table) -> dict[str, pa.Table]:
    """The rows a batch set aside, per source table (sorted by name)."""
    column = rejected.column("table")
    return {
        name: rejected.filter(pc.equal(column, name)) for name in sorted(set(column.to_pylist()))
    }


def data_files(
    built: BuiltBatch, attempt: int | None
) -> list[tuple[str, str, ParquetSpool | pa.Table]]:
    """(warehouse table, key, rows) of every data file of the batch, in warehouse order;
    a table without rows has no file."""
    files = []
    for name in WAREHOUSE_TABLES:
        data = built.table_data(name)
        if data is not None:
            files.append((name, output_key(name, built.batch_id, attempt), data))
    return files


def set_aside_files(built: BuiltBatch, attempt: int | None) -> list[tuple[str, str, pa.Table]]:
    """(source table, key, rows) of every set-aside file of the batch."""
    return [
        (name, layout.rejects_key(name, built.batch_id, attempt), rows)
        for name, rows in set_aside_tables(built.rejected).items()
    ]


def snapshot_files(batch_id: str, state: TransformState) -> dict[str, pa.Table]:
    """The state snapshot after `batch_id`, by key."""
    return {snapshot_key(batch_id, name): table for name, table in snapshot_tables(state).items()}
