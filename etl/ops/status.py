"""What `python -m etl status` reports: watermarks and the latest batches."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from etl import layout
from etl.ingest.run import load_state
from etl.manifests import ingestion as ingestion_manifest
from etl.storage import ObjectStore
from etl.transform import rejects
from etl.transform.batch import state_pointer


def ingestion_status(store: ObjectStore, batches: int = 5) -> list[str]:
    state = load_state(store)
    if state.batch_id is None:
        return [f"ingestion s3://{store.bucket}: no batch yet"]
    lines = [
        f"ingestion s3://{store.bucket}: last batch {state.batch_id}",
        "watermarks (last_updated):",
    ]
    width = max(len(table) for table in state.bookmarks)
    for table, mark in sorted(state.bookmarks.items()):
        shown = mark.value.isoformat(sep=" ", timespec="milliseconds") if mark.value else "-"
        lines.append(f"  {table:<{width}} {shown}")
    # Batch ids start with their date, so yesterday's and today's manifests are one listing.
    day = layout.batch_ts_of(state.batch_id)
    since = (day - timedelta(days=1)).strftime("%Y%m%d")
    keys = list(store.keys(layout.MANIFEST_PREFIX, start_after=layout.manifest_key(since)))
    lines.append("latest batches:")
    for key in keys[-batches:]:
        manifest = ingestion_manifest.read_key(store, key)
        if manifest is None:  # listed a moment ago; gone now
            continue
        rows = sum(int(t["rows"]) for t in manifest["tables"].values())
        lines.append(f"  {manifest['batch_id']} rows={rows} seconds={manifest['seconds']}")
    return lines


def pending_transform(ingestion: ObjectStore, processed: ObjectStore) -> list[str]:
    """Ingestion batches the transform has not processed yet."""
    done = state_pointer(processed)
    after = layout.manifest_key(done) if done else ""
    processed_after = {
        layout.batch_id_of_manifest(k) for k in processed.keys(layout.MANIFEST_PREFIX, after)
    }
    return [
        batch
        for batch in map(layout.batch_id_of_manifest, ingestion.keys(layout.MANIFEST_PREFIX, after))
        if batch not in processed_after
    ]


def pending_load(processed: ObjectStore, last_loaded: str | None) -> list[str]:
    after = layout.manifest_key(last_loaded) if last_loaded else ""
    return [layout.batch_id_of_manifest(k) for k in processed.keys(layout.MANIFEST_PREFIX, after)]


def set_aside_lines(open_rows: pa.Table) -> list[str]:
    """The open set-aside rows: each waits for its source row to be corrected."""
    if open_rows.num_rows == 0:
        return ["set aside: none open"]
    lines = [
        f"set aside: {open_rows.num_rows} row(s) open, waiting for a corrected source row"
        f" (s3 rejects/ area; docs/operations.md, 'Rows set aside'):"
    ]
    return lines + [f"  {line}" for line in rejects.describe(open_rows, limit=20)]


def load_set_aside_lines(open_rows: pa.Table) -> list[str]:
    """The open rows load set aside (too large for this warehouse's columns); none: nothing."""
    if open_rows.num_rows == 0:
        return []
    lines = [
        f"set aside at load: {open_rows.num_rows} row(s) open, too large for this warehouse's"
        " columns (etl.load_set_aside; docs/operations.md, 'Rows set aside'):"
    ]
    return lines + [f"  {line}" for line in rejects.describe(open_rows, limit=20)]


def waiting_lines(counts: dict[str, int]) -> list[str]:
    """Fact versions held back because a dimension row they refer to is not loaded yet."""
    if not counts:
        return []
    shown = ", ".join(f"{table}={n}" for table, n in sorted(counts.items()))
    return [f"waiting for a dimension row (load them with it): {shown}"]


def describe_delay(delay: timedelta | None) -> str:
    if delay is None:
        return "-"
    seconds = int(delay.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 172800 else f"{seconds // 86400}d"
