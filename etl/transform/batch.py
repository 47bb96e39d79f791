"""Transform ingestion batches, in order, into the processed bucket.

    <warehouse_table>/year=YYYY/month=MM/day=DD/<warehouse_table>-<batch_id>.parquet
    _manifests/<batch_id>.json             one per processed batch, written after its files
    _state/snapshots/<batch_id>/*.parquet  the remodel state after that batch
    _state/transform.json                  which batch the state belongs to, written last

A processed batch has the id of the ingestion batch it came from. Its state snapshot is
written under its own prefix before the manifest, so a crash at any point leaves the
previous state intact: rerunning recomputes the same files (same bytes), and a batch whose
manifest exists is recovered rather than redone.

One transform writes at a time: the run holds the transform lease (etl.lease), checked
before the manifest, the state and every clean-up deletion. Objects are created with
If-None-Match; the leftovers of an attempt that died (files and snapshots of batches after
the last processed one, which no manifest references) are replaced by the next attempt
with If-Match on the version seen under the lease, not deleted first; the state is
replaced only from the version read under the lease.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl import layout
from etl.config import Settings
from etl.csv_format import BLOCK_SIZE, iter_extract
from etl.errors import EtlError, LeaseLostError
from etl.lease import Lease, hold
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests import processed as processed_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.manifests.processed import ProcessedManifest, ProcessedTableEntry
from etl.storage import ObjectStore
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

logger = logging.getLogger("etl.transform")

STATE_KEY = "_state/transform.json"
SNAPSHOT_PREFIX = "_state/snapshots/"
StepHook = Callable[[str], None]


@dataclass
class StateVersion:
    """The ETag of the state object this run may replace (None: there is none yet)."""

    etag: str | None


@dataclass(frozen=True)
class TransformResult:
    batch_id: str
    manifest_key: str
    manifest: ProcessedManifest

    @property
    def rows(self) -> dict[str, int]:
        return {table: int(entry["rows"]) for table, entry in self.manifest["tables"].items()}


def output_key(table: str, batch_id: str, attempt: int | None = None) -> str:
    """`attempt` is the writer's lease generation (see layout.extract_key)."""
    return layout.data_key(table, batch_id, "parquet", attempt)


def parquet_bytes(table: pa.Table) -> bytes:
    """How every parquet object of the processed bucket is written (zstd); doctor's
    rebuilt snapshots too."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_parquet(store: ObjectStore, key: str) -> pa.Table | None:
    """A parquet object of the processed bucket, None when absent; a truncated or altered
    one is refused in one line naming it."""
    body = store.get_bytes(key)
    if body is None:
        return None
    try:
        return pq.read_table(io.BytesIO(body))
    except (pa.ArrowInvalid, OSError) as error:
        raise store.damaged(
            key, f"not a readable parquet file ({str(error).splitlines()[0]})"
        ) from None


def state_pointer(processed: ObjectStore) -> str | None:
    """The batch `_state/transform.json` names (None when there is none)."""
    document = processed.get_json(STATE_KEY)
    if document is None:
        return None
    batch_id = document.get("batch_id") if isinstance(document, dict) else 0
    if batch_id is not None and not isinstance(batch_id, str):
        raise processed.damaged(STATE_KEY, "not a transform state document")
    return batch_id


REJECTED_SNAPSHOT = "rejected_open"  # the open set-aside rows; optional (older snapshots lack it)


def snapshot_names() -> list[str]:
    """The objects every state snapshot has: transform writes them, doctor checks and
    rebuilds them (and REJECTED_SNAPSHOT, which older snapshots lack)."""
    return [*STATEFUL_TABLES, *(f"emitted_{name}" for name in FACT_SOURCES)]


def load_state(processed: ObjectStore) -> tuple[str | None, TransformState]:
    """(last processed batch id, its remodel state), recovering from a manifest written
    after the state object was last saved."""
    batch_id = state_pointer(processed)
    newer = list(
        processed.keys(layout.MANIFEST_PREFIX, layout.manifest_key(batch_id) if batch_id else "")
    )
    if newer:
        batch_id = layout.batch_id_of_manifest(newer[-1])
        log_event(logger, "transform_state_recovered_from_manifest", batch_id=batch_id)
    if batch_id is None:
        return None, TransformState()
    tables = {
        name: read_parquet(processed, f"{SNAPSHOT_PREFIX}{batch_id}/{name}.parquet")
        for name in snapshot_names()
    }
    missing = [name for name, table in tables.items() if table is None]
    if missing:
        raise EtlError(
            f"transform state of batch {batch_id} is incomplete: no snapshot {', '.join(missing)}"
        )
    current = {name: tables[name] for name in STATEFUL_TABLES}
    emitted = {name: tables[f"emitted_{name}"] for name in FACT_SOURCES}
    return batch_id, TransformState(current, emitted, _rejected_snapshot(processed, batch_id))


def writes_rejects(processed: ObjectStore, batch_id: str) -> bool:
    """Whether the batch's manifest was written by a release that sets rows aside (it has
    the `rejects` field), so its state snapshot must hold the open set-aside rows."""
    document = processed.get_json(layout.manifest_key(batch_id))
    return isinstance(document, dict) and "rejects" in document


def _rejected_snapshot(processed: ObjectStore, batch_id: str) -> pa.Table:
    """The open set-aside rows of the batch's snapshot: none for a snapshot written before
    rows were set aside; a lost one of a later snapshot is refused, not read as none (the
    rows would be reported again and age into freshness breaches)."""
    key = f"{SNAPSHOT_PREFIX}{batch_id}/{REJECTED_SNAPSHOT}.parquet"
    found = read_parquet(processed, key)
    if found is not None:
        return found
    if writes_rejects(processed, batch_id):
        raise EtlError(
            f"transform state of batch {batch_id} is incomplete: no snapshot {REJECTED_SNAPSHOT}"
            " (`python -m etl doctor --repair` rebuilds it)"
        )
    return rejects_log.empty()


def open_rejects(processed: ObjectStore) -> pa.Table:
    """The set-aside rows no batch has corrected yet, as of the newest state snapshot."""
    batch_id = state_pointer(processed)
    return _rejected_snapshot(processed, batch_id) if batch_id else rejects_log.empty()


def _check_tables(manifest: IngestionManifest) -> None:
    unknown = [name for name in manifest["tables"] if name not in SOURCE_TABLES]
    if unknown:
        raise EtlError(
            f"ingestion manifest {manifest['batch_id']} names unknown table {unknown[0]!r}"
        )


def extract_chunks(
    ingestion: ObjectStore, manifest: IngestionManifest, name: str, block_size: int = BLOCK_SIZE
) -> Iterator[pa.Table]:
    """One table's extract of the batch, parsed block by block; its sha256 is checked once
    the whole file is read, before anything of the batch is published."""
    entry = manifest["tables"].get(name)
    if entry is None or entry["file"] is None:
        return
    source = f"s3://{ingestion.bucket}/{entry['file']}"
    reader = ingestion.open(entry["file"])
    if reader is None:
        raise EtlError(f"{source} is listed in its manifest but missing")
    with reader:
        yield from iter_extract(reader, SOURCE_TABLES[name], source, block_size)
        if reader.sha256 != entry["sha256"]:
            raise EtlError(
                f"{source} does not match the sha256 in its manifest (changed after ingestion)"
            )


def read_batch(
    ingestion: ObjectStore, manifest: IngestionManifest, names: Iterable[str]
) -> dict[str, pa.Table]:
    """Whole tables: for the small sources only."""
    batch = {}
    for name in names:
        chunks = list(extract_chunks(ingestion, manifest, name))
        if chunks:
            batch[name] = pa.concat_tables(chunks)
    return batch


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


def build_batch(
    ingestion: ObjectStore,
    manifest: IngestionManifest,
    state: TransformState,
    stack: contextlib.ExitStack,
    policy: str = rejects_log.SET_ASIDE,
    block_size: int = BLOCK_SIZE,
) -> BuiltBatch:
    """Remodel one ingestion batch given the state before it. Small sources are remodelled
    whole; the row-wise ones chunk by chunk into local parquet spools (closed with
    `stack`). Every extract is read and verified before this returns; nothing is written
    to S3, so doctor rebuilds exactly what transform publishes by calling it too."""
    _check_tables(manifest)
    rejects = rejects_log.RejectLog(
        policy, manifest["batch_id"], rejects_log.open_identities(state.rejected)
    )
    small = [name for name in manifest["tables"] if name not in ROW_WISE_SOURCES]
    outputs, current = remodel_dimensions(read_batch(ingestion, manifest, small), state, rejects)
    row_wise = RowRemodel(state, rejects)
    spools: dict[str, ParquetSpool] = {}
    for source in ROW_WISE_SOURCES:
        for chunk in extract_chunks(ingestion, manifest, source, block_size):
            target, rows = row_wise.rows(source, chunk)
            if target not in spools:
                spools[target] = stack.enter_context(ParquetSpool(WAREHOUSE_TABLES[target].schema))
            spools[target].write(rows)
    outputs["dim_date"] = row_wise.dim_date()
    new, still_open = rejects.settle(state.rejected)
    state_after = TransformState(current, row_wise.emitted(), still_open)
    return BuiltBatch(manifest["batch_id"], spools, outputs, state_after, new)


def snapshot_tables(state: TransformState) -> dict[str, pa.Table]:
    """The objects of one state snapshot (snapshot_names(), then the open set-aside rows)."""
    return {
        **state.current,
        **{f"emitted_{name}": table for name, table in state.emitted.items()},
        REJECTED_SNAPSHOT: state.rejected,
    }


def write_table_data(
    processed: ObjectStore, key: str, data: ParquetSpool | pa.Table
) -> ProcessedTableEntry:
    """One warehouse table's (or its set-aside rows') parquet at `key`, as a manifest entry."""
    if isinstance(data, ParquetSpool):
        return processed_manifest.table_entry(
            data.upload(processed, key), data.rows, data.schema.names
        )
    written = processed.put_bytes(key, parquet_bytes(data))
    return processed_manifest.table_entry(written, data.num_rows, data.column_names)


def write_batch_files(
    processed: ObjectStore, built: BuiltBatch, attempt: int | None, written: list[str]
) -> tuple[dict[str, ProcessedTableEntry], dict[str, ProcessedTableEntry]]:
    """(data entries, set-aside entries) of the batch's parquet files, each key appended to
    `written` as soon as it exists."""
    tables: dict[str, ProcessedTableEntry] = {}
    for name in WAREHOUSE_TABLES:
        data = built.table_data(name)
        if data is not None:
            written.append(output_key(name, built.batch_id, attempt))
            tables[name] = write_table_data(processed, written[-1], data)
    set_aside: dict[str, ProcessedTableEntry] = {}
    for name in sorted(set(built.rejected.column("table").to_pylist())):
        rows = built.rejected.filter(pc.equal(built.rejected.column("table"), name))
        written.append(layout.rejects_key(name, built.batch_id, attempt))
        set_aside[name] = write_table_data(processed, written[-1], rows)
    return tables, set_aside


def transform_batch(
    ingestion: ObjectStore,
    processed: ObjectStore,
    manifest: IngestionManifest,
    state: TransformState,
    previous_batch_id: str | None,
    step: StepHook,
    block_size: int = BLOCK_SIZE,
    lease: Lease | None = None,
    state_version: StateVersion | None = None,
    policy: str = rejects_log.SET_ASIDE,
) -> tuple[TransformResult, TransformState]:
    """Build the batch, then publish it: files, snapshot, manifest, state, tidy-up.
    Nothing is uploaded until every extract is read and verified."""
    started = time.perf_counter()
    batch_id = manifest["batch_id"]
    with contextlib.ExitStack() as stack:
        built = build_batch(ingestion, manifest, state, stack, policy, block_size)
        written: list[str] = []
        try:
            tables, set_aside = write_batch_files(
                processed, built, None if lease is None else lease.generation, written
            )
            step("data_written")
            for name, table in snapshot_tables(built.state_after).items():
                processed.put_bytes(
                    f"{SNAPSHOT_PREFIX}{batch_id}/{name}.parquet", parquet_bytes(table)
                )
            step("state_snapshot_written")
        except BaseException as error:
            # tidy (unreferenced files are invisible anyway), but only as the lease holder:
            # after a takeover these keys may be the successor's files
            if not isinstance(error, LeaseLostError):
                with contextlib.suppress(Exception):
                    if lease is not None:
                        lease.check("tidying")
                    for key in written:
                        processed.delete(key)
            raise
    document = processed_manifest.new(
        batch_id, previous_batch_id, tables, datetime.now(UTC), time.perf_counter() - started,
        set_aside,
    )  # fmt: skip
    manifest_key = commit_batch(processed, document, step, lease, state_version)
    if set_aside:
        log_event(logger, "rows_set_aside", logging.WARNING, batch_id=batch_id,
                  rows=rejects_log.summary(built.rejected))  # fmt: skip
    log_event(logger, "batch_transformed", batch_id=batch_id, rows=sum(t["rows"] for t in tables.values()),
              seconds=document["seconds"])  # fmt: skip
    return TransformResult(batch_id, manifest_key, document), built.state_after


def commit_batch(
    processed: ObjectStore,
    document: ProcessedManifest,
    step: StepHook,
    lease: Lease | None,
    state_version: StateVersion | None,
) -> str:
    """The commit protocol once a batch's files and snapshot are written: the manifest (the
    batch exists from here on), then the state pointer, then the tidy-up of what earlier
    snapshots and attempts left. Every write is checked against the lease first."""
    batch_id = document["batch_id"]
    if lease is not None:
        lease.check("the manifest")
    manifest_key = processed_manifest.write(processed, document)
    step("manifest_written")
    if lease is not None:
        lease.check("the state")
    if state_version is None:
        processed.put_json(STATE_KEY, {"batch_id": batch_id})
    else:
        state_version.etag = processed.replace_json(
            STATE_KEY, {"batch_id": batch_id}, state_version.etag
        )
    step("state_written")
    remove_old_snapshots(processed, batch_id, lease)
    leftovers = [
        key
        for key in processed.replaceable
        if key.startswith(f"{SNAPSHOT_PREFIX}{batch_id}/") or _leftover_batch_id(key) == batch_id
    ]
    for key in leftovers:
        # a leftover of this batch that this attempt did not write again (an earlier
        # attempt's files carry its own lease generation): unreferenced now that the
        # manifest is committed, removed as the lease holder
        if lease is not None:
            lease.check(f"deleting {key}")
        processed.delete(key)
        del processed.replaceable[key]
    return manifest_key


def remove_old_snapshots(processed: ObjectStore, batch_id: str, lease: Lease | None) -> int:
    """Delete the snapshots of batches before the newest processed manifest: every other
    one, not only the previous batch's, since a run killed after its manifest but before
    this point left its own predecessor's behind. The newest manifest's snapshot (the one
    load_state reads) and anything newer are never touched, whoever runs this."""
    later = list(processed.keys(layout.MANIFEST_PREFIX, layout.manifest_key(batch_id)))
    newest = layout.batch_id_of_manifest(later[-1]) if later else batch_id
    removed = 0
    for key in list(processed.keys(SNAPSHOT_PREFIX)):
        if key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0] >= newest:
            continue
        if lease is not None:
            lease.check(f"deleting {key}")
        processed.delete(key)
        removed += 1
    return removed


def adopt_unfinished_outputs(processed: ObjectStore, last_processed: str | None) -> int:
    """Mark what attempts that died before their manifest left (output files and
    snapshots of batches after the last processed one, which no manifest references) as
    replaceable in the version seen now. The next attempt of the batch writes the same
    keys (transform is deterministic) with If-Match on that version instead of deleting
    them first: a writer that lost its lease and resumes later cannot delete or replace
    what its successor wrote over them. Returns how many were adopted."""
    adopted = 0
    prefixes = [f"{name}/" for name in WAREHOUSE_TABLES] + [SNAPSHOT_PREFIX, layout.REJECTS_PREFIX]
    complete: dict[str, bool] = {}
    for prefix in prefixes:
        after = (
            output_key(prefix.rstrip("/"), last_processed)
            if last_processed and prefix not in (SNAPSHOT_PREFIX, layout.REJECTS_PREFIX)
            else ""
        )
        for key, etag in list(processed.versions(prefix, start_after=after)):
            batch_id = _output_batch_id(prefix, key)
            if batch_id is None or (last_processed is not None and batch_id <= last_processed):
                continue
            if batch_id not in complete:
                complete[batch_id] = processed.get_json(layout.manifest_key(batch_id)) is not None
            if not complete[batch_id]:
                processed.replaceable[key] = etag
                adopted += 1
    if adopted:
        log_event(logger, "unfinished_transform_files_adopted", files=adopted, after=last_processed)
    return adopted


def _output_batch_id(prefix: str, key: str) -> str | None:
    """The batch id of an output file, set-aside file or snapshot key, None for anything
    else."""
    if prefix == SNAPSHOT_PREFIX:
        candidate = key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0]
        try:
            layout.batch_ts_of(candidate)
        except ValueError:
            return None
        return candidate
    if prefix == layout.REJECTS_PREFIX:
        return layout.batch_id_of_rejects_key(key)
    return layout.batch_id_of_data_key(prefix.rstrip("/"), key, "parquet")


def _leftover_batch_id(key: str) -> str | None:
    """The batch id of a replaceable leftover key (data or set-aside file)."""
    if key.startswith(layout.REJECTS_PREFIX):
        return layout.batch_id_of_rejects_key(key)
    return _output_batch_id(key.split("/", 1)[0] + "/", key)


def transform_pending(
    settings: Settings,
    s3_client: Any,
    up_to: str | None = None,
    on_step: StepHook | None = None,
    block_size: int = BLOCK_SIZE,
) -> list[TransformResult]:
    """Transform every ingestion batch not processed yet, oldest first (up to `up_to`);
    `block_size` is how many bytes of CSV are parsed at a time. Holds the transform lease."""
    settings.require("ingestion_bucket", "processed_bucket", "warehouse_db_url")
    with hold(settings, "transform") as lease:
        return _transform_pending(settings, s3_client, up_to, on_step, block_size, lease)


def _transform_pending(
    settings: Settings,
    s3_client: Any,
    up_to: str | None,
    on_step: StepHook | None,
    block_size: int,
    lease: Lease,
) -> list[TransformResult]:
    ingestion = ObjectStore(s3_client, settings.ingestion_bucket)
    processed = ObjectStore(s3_client, settings.processed_bucket, create_only=True)
    step = on_step or (lambda _: None)
    state_version = StateVersion(processed.etag(STATE_KEY))
    batch_id, state = load_state(processed)
    adopt_unfinished_outputs(processed, batch_id)
    if up_to is not None and ingestion_manifest.read(ingestion, up_to) is None:
        raise EtlError(f"no ingestion batch {up_to} in s3://{settings.ingestion_bucket}")
    after = layout.manifest_key(batch_id) if batch_id else ""
    results = []
    for key in ingestion.keys(layout.MANIFEST_PREFIX, start_after=after):
        next_id = layout.batch_id_of_manifest(key)
        if up_to is not None and next_id > up_to:
            break
        manifest = ingestion_manifest.read_key(ingestion, key)
        assert manifest is not None
        result, state = transform_batch(
            ingestion, processed, manifest, state, batch_id, step, block_size, lease,
            state_version, settings.bad_row_policy,
        )  # fmt: skip
        results.append(result)
        batch_id = next_id
    return results
