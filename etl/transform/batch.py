"""Transform ingestion batches, in order, into the processed bucket.

    <warehouse_table>/year=YYYY/month=MM/day=DD/<warehouse_table>-<batch_id>.parquet
    _manifests/<batch_id>.json             one per processed batch, written after its files
    _state/snapshots/<batch_id>/*.parquet  the remodel state after that batch
    _state/transform.json                  which batch the state belongs to, written last

A processed batch has the id of the ingestion batch it came from. This module is the
stage's orchestration and its reading side: it reads the extracts and the previous
snapshot, has etl.transform.build remodel the batch (no I/O), and etl.transform.publish
write it (files, snapshot, manifest, state: the commit protocol and why a crash at any
point leaves the previous state intact).

One transform writes at a time: the run holds the transform lease (etl.lease), checked
before the manifest, the state and every clean-up deletion.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl import layout
from etl.config import Settings
from etl.csv_format import BLOCK_SIZE, iter_extract
from etl.errors import EtlError
from etl.lease import Lease, LeaseTerms, hold
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests import processed as processed_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.manifests.processed import ProcessedManifest
from etl.storage import ObjectStore
from etl.tables import SOURCE_TABLES
from etl.transform import rejects as rejects_log
from etl.transform.build import (
    REJECTED_SNAPSHOT,
    SNAPSHOT_PREFIX,
    STATE_KEY,
    BatchRemodel,
    BuiltBatch,
    output_key,
    small_sources,
    snapshot_key,
    snapshot_names,
    snapshot_tables,
)
from etl.transform.publish import (
    StateVersion,
    StepHook,
    adopt_unfinished_outputs,
    commit_batch,
    parquet_bytes,
    remove_old_snapshots,
    write_batch_files,
    write_files,
    write_table_data,
)
from etl.transform.remodel import FACT_SOURCES, ROW_WISE_SOURCES, STATEFUL_TABLES, TransformState
from etl.transform.spool import ParquetSpool
from etl.warehouse import WAREHOUSE_TABLES

# names other modules import from here (the stage's public face), wherever they live now
__all__ = [
    "REJECTED_SNAPSHOT",
    "SNAPSHOT_PREFIX",
    "STATE_KEY",
    "BuiltBatch",
    "StateVersion",
    "StepHook",
    "TransformResult",
    "adopt_unfinished_outputs",
    "build_batch",
    "commit_batch",
    "extract_chunks",
    "load_state",
    "open_rejects",
    "output_key",
    "parquet_bytes",
    "read_batch",
    "read_parquet",
    "read_state",
    "remove_old_snapshots",
    "snapshot_names",
    "snapshot_tables",
    "state_pointer",
    "transform_batch",
    "transform_pending",
    "write_batch_files",
    "write_table_data",
    "writes_rejects",
]

logger = logging.getLogger("etl.transform")


@dataclass(frozen=True)
class TransformResult:
    batch_id: str
    manifest_key: str
    manifest: ProcessedManifest

    @property
    def rows(self) -> dict[str, int]:
        return {table: int(entry["rows"]) for table, entry in self.manifest["tables"].items()}


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


def _state_pointer_version(processed: ObjectStore) -> tuple[str | None, str | None]:
    """(the batch `_state/transform.json` names, the ETag of that object): one GET."""
    document, etag = processed.get_json_version(STATE_KEY)
    if document is None:
        return None, etag
    batch_id = document.get("batch_id") if isinstance(document, dict) else 0
    if batch_id is not None and not isinstance(batch_id, str):
        raise processed.damaged(STATE_KEY, "not a transform state document")
    return batch_id, etag


def state_pointer(processed: ObjectStore) -> str | None:
    """The batch `_state/transform.json` names (None when there is none)."""
    return _state_pointer_version(processed)[0]


def read_state(processed: ObjectStore) -> tuple[str | None, TransformState, StateVersion]:
    """load_state, and the version of the state object as read (None: there is none yet):
    the one the run's state replacements are conditional on, from the same GET (no HEAD)."""
    batch_id, etag = _state_pointer_version(processed)
    newer = list(
        processed.keys(layout.MANIFEST_PREFIX, layout.manifest_key(batch_id) if batch_id else "")
    )
    if newer:
        batch_id = layout.batch_id_of_manifest(newer[-1])
        log_event(logger, "transform_state_recovered_from_manifest", batch_id=batch_id)
    if batch_id is None:
        return None, TransformState(), StateVersion(etag)
    tables = {
        name: read_parquet(processed, snapshot_key(batch_id, name)) for name in snapshot_names()
    }
    missing = [name for name, table in tables.items() if table is None]
    if missing:
        raise EtlError(
            f"transform state of batch {batch_id} is incomplete: no snapshot {', '.join(missing)}"
        )
    current = {name: tables[name] for name in STATEFUL_TABLES}
    emitted = {name: tables[f"emitted_{name}"] for name in FACT_SOURCES}
    state = TransformState(current, emitted, _rejected_snapshot(processed, batch_id))
    return batch_id, state, StateVersion(etag)


def load_state(processed: ObjectStore) -> tuple[str | None, TransformState]:
    """(last processed batch id, its remodel state), recovering from a manifest written
    after the state object was last saved."""
    batch_id, state, _ = read_state(processed)
    return batch_id, state


def writes_rejects(processed: ObjectStore, batch_id: str) -> bool:
    """Whether the batch's manifest was written by a release that sets rows aside (it has
    the `rejects` field), so its state snapshot must hold the open set-aside rows."""
    document = processed.get_json(layout.manifest_key(batch_id))
    return isinstance(document, dict) and "rejects" in document


def _rejected_snapshot(processed: ObjectStore, batch_id: str) -> pa.Table:
    """The open set-aside rows of the batch's snapshot: none for a snapshot written before
    rows were set aside; a lost one of a later snapshot is refused, not read as none (the
    rows would be reported again and age into freshness breaches)."""
    found = read_parquet(processed, snapshot_key(batch_id, REJECTED_SNAPSHOT))
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
    remodel = BatchRemodel(manifest, state, policy)
    remodel.small(read_batch(ingestion, manifest, small_sources(manifest)))
    spools: dict[str, ParquetSpool] = {}
    for source in ROW_WISE_SOURCES:
        for chunk in extract_chunks(ingestion, manifest, source, block_size):
            target, rows = remodel.rows(source, chunk)
            if target not in spools:
                spools[target] = stack.enter_context(ParquetSpool(WAREHOUSE_TABLES[target].schema))
            spools[target].write(rows)
    done = remodel.finish()
    return BuiltBatch(manifest["batch_id"], spools, done.outputs, done.state_after, done.rejected)


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
        tables, set_aside = write_files(processed, built, step, lease)
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
    with hold(LeaseTerms.of(settings), "transform") as lease:
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
    batch_id, state, state_version = read_state(processed)  # replaced only from this version
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
