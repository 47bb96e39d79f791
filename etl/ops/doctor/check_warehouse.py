"""The warehouse checks (pure): the load ledger holds processed batches only, in batch
order, none skipped; every warehouse table exists and no key repeats. Doctor never deletes
or updates a warehouse row, so only a lost processed manifest has a repair here."""

from __future__ import annotations

from etl import layout
from etl.ops.doctor.check_records import rederivable
from etl.ops.doctor.lake import Finding, Lake, Report, examples, newest_batch
from etl.warehouse import WAREHOUSE_TABLES


def check_ledger(lake: Lake, report: Report) -> None:
    """The ledger holds processed batches only, in batch order, and none was skipped."""
    processed, loaded = set(lake.processed.manifests), lake.ledger
    unknown = (
        set(loaded)
        - processed
        - {layout.batch_id_of_manifest(k) for k in lake.processed.unreadable}
    )
    for batch in sorted(unknown):
        problem = f"loaded batch {batch} has no processed manifest"
        if batch in lake.ingestion.manifests:
            report.add(rederivable(lake, "ledger", problem, batch, "its files are not listed"))
        else:
            report.add(
                Finding(
                    "ledger",
                    problem + " and no ingestion batch",
                    "the record of a loaded batch is gone; restore its ingestion manifest from"
                    " S3 versioning, then --repair rebuilds the processed one (doctor never"
                    " deletes warehouse rows)",
                )
            )
    if loaded != sorted(loaded):
        report.add(
            Finding(
                "ledger",
                "the ledger was not written in batch order",
                "an older batch was loaded after a newer one, so a dimension may hold an older"
                " value; `python -m etl run --full-refresh` rewrites the current values",
            )
        )
    newest = newest_batch(loaded)
    skipped = {b for b in processed - set(loaded) if newest is not None and b < newest}
    if skipped:
        report.add(
            Finding(
                "ledger",
                f"{len(skipped)} processed batch(es) older than the newest loaded batch {newest}"
                f" were never loaded: {examples(skipped)}",
                "load only takes batches after the newest in the ledger, so their rows are not in"
                " the warehouse; run `python -m etl run --full-refresh`; not repaired"
                " automatically",
                len(skipped),
            )
        )


def check_version_keys(lake: Lake, report: Report) -> None:
    """Each dimension's natural id and each fact's version key is unique."""
    missing = sorted(table for table, extra in lake.duplicate_keys.items() if extra < 0)
    if missing:
        report.add(
            Finding(
                "warehouse-tables",
                f"{len(missing)} warehouse table(s) do not exist: {examples(missing)}",
                "load fails until they do; run `python -m etl init-warehouse` (or map a prepared"
                " warehouse's names with WAREHOUSE_NAME_MAP)",
            )
        )
    for table, extra in lake.duplicate_keys.items():
        if extra < 0:
            continue
        key = ", ".join(WAREHOUSE_TABLES[table].key)
        report.add(
            Finding(
                "warehouse-keys",
                f"{table}: {extra} row(s) repeat a ({key}) already present",
                "a load ran without the unique version index; doctor never deletes warehouse"
                f" rows: review them (GROUP BY {key} HAVING count(*) > 1), remove the extra"
                " copies by hand and create the index of docs/architecture.md",
                extra,
            )
        )
