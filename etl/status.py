"""What `python -m etl status` reports: watermarks and the latest batches."""

from __future__ import annotations

from datetime import timedelta

from etl import layout
from etl.ingest import load_state
from etl.storage import ObjectStore


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
        manifest = store.get_json(key) or {}
        rows = sum(int(t["rows"]) for t in manifest.get("tables", {}).values())
        lines.append(
            f"  {layout.batch_id_of_manifest(key)} rows={rows} seconds={manifest.get('seconds')}"
        )
    return lines
