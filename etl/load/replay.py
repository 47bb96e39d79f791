"""`etl replay`: apply loaded batches again to warehouse tables that were damaged."""

from __future__ import annotations

from typing import Any

from etl import layout
from etl.config import Settings
from etl.errors import ConfigError, EtlError
from etl.lease import LeaseTerms, hold
from etl.load import ledger
from etl.load.apply import LoadResult, StepHook
from etl.load.session import apply_batches, connect_warehouse, start_session
from etl.storage import ObjectStore
from etl.warehouse import WAREHOUSE_TABLES


def replay(
    settings: Settings,
    s3_client: Any,
    tables: tuple[str, ...],
    from_batch: str | None = None,
    on_step: StepHook | None = None,
) -> list[LoadResult]:
    """Apply the loaded processed batches again (from `from_batch`, else the first) to
    `tables` of the warehouse, oldest first, each in one transaction, holding the load
    lease: what a damaged warehouse table needs to match its batches again. Dimensions end
    at their newest values, missing fact versions are inserted, nothing is duplicated; the
    ledger and batches not loaded yet are left to `load`."""
    settings.require("warehouse_db_url", "processed_bucket")
    unknown = [t for t in tables if t not in WAREHOUSE_TABLES]
    if unknown or not tables:
        raise EtlError(
            f"replay: {', '.join(unknown) or 'no table'} is not a warehouse table"
            f" (one of {', '.join(WAREHOUSE_TABLES)}, or --all)"
        )
    with hold(LeaseTerms.of(settings), "load") as lease, connect_warehouse(settings) as conn:
        session = start_session(settings, s3_client, conn, lease)
        loaded = set(ledger.loaded_batches(conn))
        conn.commit()
        keys = _replay_keys(session.processed, loaded, from_batch)
        return apply_batches(session, keys, on_step, tables)


def _replay_keys(processed: ObjectStore, loaded: set[str], from_batch: str | None) -> list[str]:
    """The manifests of the loaded batches to apply again, oldest first; refused in one
    line when `from_batch` is no batch id, when nothing loaded is that new, or when a loaded
    batch has lost its manifest (dimensions would end at an older value)."""
    if from_batch:
        try:
            layout.batch_ts_of(from_batch)
        except ValueError:
            raise ConfigError(
                f"replay --from {from_batch!r} is not a batch id (YYYYMMDDTHHMMSSffffffZ,"
                " as `python -m etl status` shows them)"
            ) from None
    wanted = sorted(b for b in loaded if not from_batch or b >= from_batch)
    if not wanted:
        raise ConfigError(f"replay: no loaded batch{' from ' + from_batch if from_batch else ''}")
    present = {layout.batch_id_of_manifest(k) for k in processed.keys(layout.MANIFEST_PREFIX)}
    lost = [b for b in wanted if b not in present]
    if lost:
        raise EtlError(
            f"replay: loaded batch(es) {', '.join(lost[:3])} have no processed manifest;"
            " `python -m etl doctor --repair` rebuilds them from the ingestion bucket first"
        )
    return [layout.manifest_key(b) for b in wanted]
