"""After the soak: is everything there exactly once, and is nothing else there?

- **Warehouse = expectation.** Each warehouse table is compared row for row with what the
  source's history implies, computed in SQL (simulator.expectations): dimensions are
  the source's current state; facts are every version that existed when an extract
  succeeded, each exactly once; dim_date is the calendar of the dates those facts use.
- **Ledger and manifests agree.** Every ingestion batch was transformed, every processed
  batch is in the load ledger exactly once, the ledger was written in batch order, each
  manifest names the batch before it, and the state objects point at the newest batch.
- **Nothing half-written or orphaned is visible.** Every data object in either bucket is
  referenced by a manifest (Athena/Glue read the partitions, not the manifests), every
  referenced object is there with its recorded size and sha256, no multipart upload is
  left open, and transform keeps only the newest batch's state snapshot.

Each missing, extra or duplicated row and each broken rule counts as one mismatch.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from etl import layout
from etl.load.names import WarehouseNames
from etl.load.target import Target
from etl.storage import ObjectStore
from etl.transform.batch import SNAPSHOT_PREFIX
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from etl.warehouse import WAREHOUSE_TABLES
from simulator.expectations import Row, calendar, current_dimensions

SHOWN = 3  # example rows per finding


@dataclass
class Verdict:
    rows_checked: int = 0
    mismatches: int = 0
    findings: list[str] = field(default_factory=list)

    def fail(self, text: str, count: int = 1) -> None:
        self.mismatches += count
        self.findings.append(text)


@dataclass(frozen=True)
class Lake:
    """Where the soak looks: the two databases and the two buckets, bypassing any proxy."""

    source_url: str
    warehouse_url: str
    s3: Any
    ingestion_bucket: str
    processed_bucket: str

    @property
    def ingestion(self) -> ObjectStore:
        return ObjectStore(self.s3, self.ingestion_bucket)

    @property
    def processed(self) -> ObjectStore:
        return ObjectStore(self.s3, self.processed_bucket)


def verify(lake: Lake, facts: dict[str, set[Row]]) -> Verdict:
    verdict = Verdict()
    check_warehouse(lake, facts, verdict)
    check_batches(lake, verdict)
    for store in (lake.ingestion, lake.processed):
        check_objects(store, verdict)
    check_snapshots(lake.processed, verdict)
    return verdict


def warehouse_rows(url: str, table: str) -> list[Row]:
    """The contract columns (no surrogate id) of every row of a warehouse table."""
    target = Target("public", WarehouseNames())
    spec = WAREHOUSE_TABLES[table]
    query = sql.SQL("SELECT {} FROM {}").format(target.columns(spec), target.table(table))
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def check_warehouse(lake: Lake, facts: dict[str, set[Row]], verdict: Verdict) -> None:
    expected: dict[str, set[Row]] = {
        **current_dimensions(lake.source_url),
        **facts,
        "dim_date": calendar(lake.source_url, facts),
    }
    for table in WAREHOUSE_TABLES:
        rows = warehouse_rows(lake.warehouse_url, table)
        verdict.rows_checked += len(rows)
        compare(table, rows, expected.get(table, set()), verdict)


def compare(table: str, rows: list[Row], expected: set[Row], verdict: Verdict) -> None:
    twice = {row: n for row, n in Counter(rows).items() if n > 1}
    missing, extra = expected - set(rows), set(rows) - expected
    for what, found in (("missing", missing), ("unexpected", extra), ("duplicated", set(twice))):
        if found:
            count = sum(twice[r] - 1 for r in found) if what == "duplicated" else len(found)
            examples = sorted(found, key=repr)[:SHOWN]
            verdict.fail(f"{table}: {count} {what} row(s), e.g. {examples}", count)


def manifests(store: ObjectStore) -> dict[str, dict[str, Any]]:
    """batch id -> manifest, in batch order."""
    return {
        layout.batch_id_of_manifest(key): store.get_json(key) or {}
        for key in store.keys(layout.MANIFEST_PREFIX)
    }


def ledger(url: str) -> list[str]:
    """Batch ids in the order they were loaded."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT batch_id FROM etl.load_ledger ORDER BY loaded_at, batch_id"
        ).fetchall()
    return [str(row[0]) for row in rows]


def check_batches(lake: Lake, verdict: Verdict) -> None:
    ingested, processed = manifests(lake.ingestion), manifests(lake.processed)
    loaded = ledger(lake.warehouse_url)
    for what, ids in (
        ("ingestion batches never transformed", set(ingested) - set(processed)),
        ("processed batches without an ingestion batch", set(processed) - set(ingested)),
        ("processed batches not in the load ledger", set(processed) - set(loaded)),
        ("ledger rows without a processed batch", set(loaded) - set(processed)),
    ):
        if ids:
            verdict.fail(f"{what}: {sorted(ids)[:SHOWN]}", len(ids))
    if len(loaded) != len(set(loaded)):
        verdict.fail(
            f"batches loaded more than once: {[b for b, n in Counter(loaded).items() if n > 1]}"
        )
    if loaded != sorted(loaded):
        verdict.fail("the ledger was not written in batch order")
    for name, chain in (("ingestion", ingested), ("processed", processed)):
        order = list(chain)
        for before, (batch, manifest) in zip([None, *order], chain.items(), strict=False):
            if manifest.get("previous_batch_id") != before:
                verdict.fail(
                    f"{name} manifest {batch} follows {manifest.get('previous_batch_id')}, not {before}"
                )
    newest = list(ingested)[-1] if ingested else None
    state = lake.ingestion.get_json(layout.STATE_KEY)
    if newest and state != ingested[newest].get("state_after"):
        verdict.fail(f"ingestion state is not the state after the newest batch {newest}")
    transform_state = lake.processed.get_json(TRANSFORM_STATE_KEY) or {}
    if processed and transform_state.get("batch_id") != list(processed)[-1]:
        verdict.fail(
            f"transform state is at {transform_state.get('batch_id')}, not the newest batch"
        )


def check_objects(store: ObjectStore, verdict: Verdict) -> None:
    referenced: dict[str, dict[str, Any]] = {}
    for manifest in manifests(store).values():
        for entry in manifest.get("tables", {}).values():
            if entry.get("file"):
                referenced[entry["file"]] = entry
    data = {
        key for key in store.keys("") if not key.startswith((layout.MANIFEST_PREFIX, "_state/"))
    }
    orphans, gone = data - set(referenced), set(referenced) - data
    if orphans:
        verdict.fail(
            f"s3://{store.bucket}: {len(orphans)} object(s) no manifest references, e.g. {sorted(orphans)[:SHOWN]}",
            len(orphans),
        )
    if gone:
        verdict.fail(
            f"s3://{store.bucket}: {len(gone)} referenced object(s) missing, e.g. {sorted(gone)[:SHOWN]}",
            len(gone),
        )
    for key in sorted(data & set(referenced)):
        body = store.get_bytes(key) or b""
        entry = referenced[key]
        if len(body) != entry["bytes"] or hashlib.sha256(body).hexdigest() != entry["sha256"]:
            verdict.fail(f"s3://{store.bucket}/{key} does not match its manifest (size or sha256)")
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    if uploads:
        keys = sorted(u["Key"] for u in uploads)[:SHOWN]
        verdict.fail(
            f"s3://{store.bucket}: {len(uploads)} incomplete multipart upload(s), e.g. {keys}",
            len(uploads),
        )


def check_snapshots(processed: ObjectStore, verdict: Verdict) -> None:
    """Transform's state is the newest batch's snapshot; older ones are garbage."""
    newest = (processed.get_json(TRANSFORM_STATE_KEY) or {}).get("batch_id")
    batches = {
        key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0]
        for key in processed.keys(SNAPSHOT_PREFIX)
    }
    stale = sorted(batches - {newest})
    if stale:
        verdict.fail(
            f"s3://{processed.bucket}: state snapshots of {len(stale)} older batch(es) left: {stale[:SHOWN]}",
            len(stale),
        )
