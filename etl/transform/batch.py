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


def _read_parquet(store: ObjectStore, key: str) -> pa.Table | None:
    body = store.get_bytes(key)
    return None if body is None else pq.read_table(io.BytesIO(body))


def snapshot_names() -> list[str]:
    """The objects of one state snapshot: transform writes them, doctor checks and rebuilds."""
    return [*STATEFUL_TABLES, *(f"emitted_{name}" for name in FACT_SOURCES)]


def load_state(processed: ObjectStore) -> tuple[str | None, TransformState]:
    """(last processed batch id, its remodel state), recovering from a manifest written
    after the state object was last saved."""
    document = processed.get_json(STATE_KEY) or {}
    batch_id = document.get("batch_id")
    newer = list(
        processed.keys(layout.MANIFEST_PREFIX, layout.manifest_key(batch_id) if batch_id else "")
    )
    if newer:
        batch_id = layout.batch_id_of_manifest(newer[-1])
        log_event(logger, "transform_state_recovered_from_manifest", batch_id=batch_id)
    if batch_id is None:
        return None, TransformState()
    tables = {
        name: _read_parquet(processed, f"{SNAPSHOT_PREFIX}{batch_id}/{name}.parquet")
        for name in snapshot_names()
    }
    missing = [name for name, table in tables.items() if table is None]
    if missing:
        raise EtlError(
            f"transform state of batch {batch_id} is incomplete: no snapshot {', '.join(missing)}"
        )
    current = {name: tables[name] for name in STATEFUL_TABLES}
    emitted = {name: tables[f"emitted_{name}"] for name in FACT_SOURCES}
    return batch_id, TransformState(current, emitted)


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
) -> tuple[TransformResult, TransformState]:
    """Small sources are remodelled whole; the row-wise ones chunk by chunk into local
    parquet spools. Nothing is uploaded until every extract is read and verified."""
    started = time.perf_counter()
    batch_id = manifest["batch_id"]
    _check_tables(manifest)
    small = [name for name in manifest["tables"] if name not in ROW_WISE_SOURCES]
    outputs, current = remodel_dimensions(read_batch(ingestion, manifest, small), state)
    row_wise = RowRemodel(state)
    with contextlib.ExitStack() as stack:
        spools: dict[str, ParquetSpool] = {}
        for source in ROW_WISE_SOURCES:
            for chunk in extract_chunks(ingestion, manifest, source, block_size):
                target, rows = row_wise.rows(source, chunk)
                if target not in spools:
                    spools[target] = stack.enter_context(
                        ParquetSpool(WAREHOUSE_TABLES[target].schema)
                    )
                spools[target].write(rows)
        outputs["dim_date"] = row_wise.dim_date()
        state_after = TransformState(current, row_wise.emitted())
        written: list[str] = []
        try:
            tables: dict[str, ProcessedTableEntry] = {}
            for name in WAREHOUSE_TABLES:
                key = output_key(name, batch_id, None if lease is None else lease.generation)
                if name in spools and spools[name].rows:
                    obj, rows, columns = (
                        spools[name].upload(processed, key),
                        spools[name].rows,
                        spools[name].schema.names,
                    )
                elif name in outputs and outputs[name].num_rows:
                    table = outputs[name]
                    obj, rows, columns = (
                        processed.put_bytes(key, parquet_bytes(table)),
                        table.num_rows,
                        table.column_names,
                    )
                else:
                    continue
                written.append(key)
                tables[name] = processed_manifest.table_entry(obj, rows, columns)
            step("data_written")
            snapshots = {
                **state_after.current,
                **{f"emitted_{n}": t for n, t in state_after.emitted.items()},
            }
            for name, table in snapshots.items():
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
        batch_id, previous_batch_id, tables, datetime.now(UTC), time.perf_counter() - started
    )
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
        if key.startswith(f"{SNAPSHOT_PREFIX}{batch_id}/")
        or _output_batch_id(key.split("/", 1)[0] + "/", key) == batch_id
    ]
    for key in leftovers:
        # a leftover of this batch that this attempt did not write again (an earlier
        # attempt's files carry its own lease generation): unreferenced now that the
        # manifest is committed, removed as the lease holder
        if lease is not None:
            lease.check(f"deleting {key}")
        processed.delete(key)
        del processed.replaceable[key]
    log_event(logger, "batch_transformed", batch_id=batch_id, rows=sum(t["rows"] for t in tables.values()),
              seconds=document["seconds"])  # fmt: skip
    return TransformResult(batch_id, manifest_key, document), state_after


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
    prefixes = [f"{name}/" for name in WAREHOUSE_TABLES] + [SNAPSHOT_PREFIX]
    complete: dict[str, bool] = {}
    for prefix in prefixes:
        after = (
            output_key(prefix.rstrip("/"), last_processed)
            if last_processed and prefix != SNAPSHOT_PREFIX
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
    """The batch id of an output file or snapshot key, None for anything else."""
    if prefix == SNAPSHOT_PREFIX:
        candidate = key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0]
        try:
            layout.batch_ts_of(candidate)
        except ValueError:
            return None
        return candidate
    return layout.batch_id_of_data_key(prefix.rstrip("/"), key, "parquet")


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
            ingestion, processed, manifest, state, batch_id, step, block_size, lease, state_version
        )
        results.append(result)
        batch_id = next_id
    return results
