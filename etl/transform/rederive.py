"""Re-derive processed batches from the record: the processed bucket holds nothing that
cannot be rebuilt from the ingestion bucket.

A processed batch is a function of its ingestion batch and the transform state before it,
and that state is a function of the transformed batches before it. So a missing,
truncated or altered parquet file, an unreadable processed manifest or a manifest lost
for a batch the warehouse has loaded is rebuilt by replaying the remodel over the
transformed ingestion batches in order (build_batch, the very code transform runs) and
writing, for the batches asked for, what transform wrote: at the keys the manifest already
names, or at the batch's own keys when there is no manifest to follow. A file that is
still whole is left alone; the manifest is rewritten only when what it records changed.
Used by `etl doctor --repair`, which holds every stage's lease around it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from etl import layout
from etl.config import SET_ASIDE
from etl.errors import DamagedObjectError
from etl.manifests import ManifestFormatError
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests import processed as processed_manifest
from etl.manifests.processed import ProcessedManifest, ProcessedTableEntry
from etl.storage import ObjectStore
from etl.transform.batch import BuiltBatch, build_batch, output_key, write_table_data
from etl.transform.remodel import TransformState
from etl.transform.spool import ParquetSpool
from etl.warehouse import WAREHOUSE_TABLES

TableData: TypeAlias = ParquetSpool | pa.Table


@dataclass
class Rederived:
    """What one re-derivation wrote."""

    files: list[str] = field(default_factory=list)  # parquet keys written again
    manifests: list[str] = field(default_factory=list)  # manifest keys written again
    replayed: int = 0  # ingestion batches remodelled to get there
    # whole files kept although the rebuild would differ (never overwritten: a loaded
    # batch's file is the record of what was loaded)
    kept_differing: list[str] = field(default_factory=list)


def readable_manifest(processed: ObjectStore, batch_id: str) -> ProcessedManifest | None:
    """The batch's processed manifest, None when it is missing or cannot be read."""
    try:
        return processed_manifest.read(processed, batch_id)
    except (ManifestFormatError, DamagedObjectError):
        return None


def _whole(processed: ObjectStore, entry: ProcessedTableEntry) -> bool:
    reader = processed.open(entry["file"])
    if reader is None:
        return False
    with reader:
        size = 0
        while chunk := reader.read(1024 * 1024):
            size += len(chunk)
    return size == entry["bytes"] and reader.sha256 == entry["sha256"]


def _entries(
    processed: ObjectStore,
    built: BuiltBatch,
    old: dict[str, ProcessedTableEntry],
    wanted: Iterator[tuple[str, TableData]],
    key_of: Callable[[str, str], str],
    out: Rederived,
) -> dict[str, ProcessedTableEntry]:
    """The manifest entries of the rebuilt files: an old entry whose file is whole is kept
    (never overwritten, even if the rebuild differs: that is reported), any other file is
    written (again) at the old entry's key or the batch's own."""
    entries: dict[str, ProcessedTableEntry] = {}
    for name, data in wanted:
        before = old.get(name)
        rows = data.rows if isinstance(data, ParquetSpool) else data.num_rows
        if before is not None and _whole(processed, before):
            entries[name] = before
            if before["rows"] != rows:
                out.kept_differing.append(before["file"])
            continue
        key = (
            before["file"]
            if before is not None
            else _own_key(processed, key_of(name, built.batch_id))
        )
        entries[name] = write_table_data(processed, key, data)
        out.files.append(key)
    return entries


def _own_key(processed: ObjectStore, plain: str) -> str:
    """Where a file the lost manifest named most likely lies: the newest attempt's key of
    the batch's file (transform writes `<table>-<batch>-a<generation>.parquet`), so the
    rebuilt manifest names it and no orphan is left; `plain` when there is none."""
    stem = plain.removesuffix(".parquet")
    attempts = [
        key
        for key in processed.keys(stem)
        if key == plain
        or key.removeprefix(stem + layout.ATTEMPT_MARK).removesuffix(".parquet").isdigit()
    ]
    return max(attempts, key=lambda k: (len(k), k), default=plain)


def _data(built: BuiltBatch) -> Iterator[tuple[str, TableData]]:
    for name in WAREHOUSE_TABLES:
        data = built.table_data(name)
        if data is not None:
            yield name, data


def _set_aside(built: BuiltBatch) -> Iterator[tuple[str, TableData]]:
    for name in sorted(set(built.rejected.column("table").to_pylist())):
        yield name, built.rejected.filter(pc.equal(built.rejected.column("table"), name))


def write_again(
    processed: ObjectStore, built: BuiltBatch, previous_batch_id: str | None, out: Rederived
) -> None:
    """Publish one rebuilt batch: its broken or missing files, then its manifest if that
    changed. The old manifest's timing fields are kept; a lost one gets the time now."""
    old = readable_manifest(processed, built.batch_id)
    tables = _entries(processed, built, old["tables"] if old else {}, _data(built),
                      output_key, out)  # fmt: skip
    rejects = _entries(processed, built, old["rejects"] if old else {}, _set_aside(built),
                       layout.rejects_key, out)  # fmt: skip
    if old is not None:
        document: ProcessedManifest = {**old, "tables": tables, "rejects": rejects}
    else:
        document = processed_manifest.new(
            built.batch_id, previous_batch_id, tables, datetime.now(UTC), 0.0, rejects
        )
    if document != old:
        out.manifests.append(processed_manifest.write(processed, document))


def rederive(
    ingestion: ObjectStore,
    processed: ObjectStore,
    batches: Collection[str],
    transformed: Collection[str],
    policy: str = SET_ASIDE,
) -> Rederived:
    """Rebuild `batches` (processed batch ids) by replaying every batch of `transformed`
    (the processed batch ids, whether or not their manifest can be read) up to the last of
    them. Raises DamagedObjectError when an ingestion batch it needs cannot be read: the
    record itself is damaged, which only S3 versioning can restore."""
    out = Rederived()
    if not batches:
        return out
    last, wanted = max(batches), set(batches)
    state, previous = TransformState(), None
    for key in ingestion.keys(layout.MANIFEST_PREFIX):
        batch_id = layout.batch_id_of_manifest(key)
        if batch_id > last:
            break
        if batch_id not in transformed and batch_id not in wanted:
            continue
        manifest = ingestion_manifest.read_key(ingestion, key)
        if manifest is None:
            raise ingestion.damaged(key, "missing: the record of a processed batch")
        with contextlib.ExitStack() as stack:
            built = build_batch(ingestion, manifest, state, stack, policy)
            if batch_id in wanted:
                write_again(processed, built, previous, out)
        state, previous = built.state_after, batch_id
        out.replayed += 1
    return out
