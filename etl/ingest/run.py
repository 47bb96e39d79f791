"""One ingestion batch: every configured table's changes, then the manifest, then state.

The entry points of the stage. A batch is decided (etl.ingest.build: skipped, refused or
run), its files written and committed (etl.ingest.publish: files, then the manifest, then
the state; the protocol and why that order is the guarantee), and its manifest and state
computed in between from what was extracted (etl.ingest.build, no I/O).

One ingest writes at a time, whatever starts it: the whole batch runs under the ingest
lease (etl.lease), checked again before every deletion, the manifest and the state. Every
object is created with If-None-Match (a late writer cannot replace a published file) and
the state is replaced only if it is still the version read under the lease.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etl import layout
from etl.config import Settings
from etl.ingest import build
from etl.ingest.publish import (
    CLEANUP_LOOKBACK,
    StepHook,
    commit,
    remove_unfinished_batches,
    write_files,
)
from etl.ingest.watermark import IngestState
from etl.ingest.window import Window
from etl.lease import Lease, LeaseTerms, hold
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.storage import ObjectStore

logger = logging.getLogger("etl.ingest.run")

__all__ = [
    "CLEANUP_LOOKBACK",
    "IngestResult",
    "StepHook",
    "ingest",
    "load_state",
    "read_state",
    "remove_unfinished_batches",
]


@dataclass(frozen=True)
class IngestResult:
    batch_id: str
    manifest_key: str
    manifest: IngestionManifest
    skipped_reason: str | None = None

    @property
    def rows(self) -> int:
        return sum(int(t["rows"]) for t in self.manifest["tables"].values())


def _state_document(store: ObjectStore) -> tuple[IngestState, str | None]:
    """The state object and its ETag (None: there is none), in one GET."""
    try:
        document, etag = store.get_json_version(layout.STATE_KEY)
        if document is not None and not isinstance(document, dict):
            raise TypeError("not an object")
        state = IngestState.from_json(document)
        if state.batch_id is not None:
            layout.batch_ts_of(state.batch_id)  # a batch id, or ValueError / TypeError
    except (AttributeError, TypeError, ValueError, KeyError):  # JSON of another shape
        raise store.damaged(layout.STATE_KEY, "not a watermark state document") from None
    return state, etag


def read_state(store: ObjectStore) -> tuple[IngestState, str | None]:
    """load_state, and the ETag of the state object as read (None: there is none yet):
    the version the batch's state replaces, taken from the same GET (no HEAD first)."""
    state, etag = _state_document(store)
    start_after = layout.manifest_key(state.batch_id) if state.batch_id else ""
    newer = list(store.keys(layout.MANIFEST_PREFIX, start_after=start_after))
    if newer:
        manifest = ingestion_manifest.read_key(store, newer[-1])
        recovered = IngestState.from_json(manifest["state_after"] if manifest else None)
        log_event(logger, "state_recovered_from_manifest", batch_id=recovered.batch_id)
        return recovered, etag
    return state, etag


def load_state(store: ObjectStore) -> IngestState:
    """The bookmarks after the newest complete batch (recovering from its manifest if the
    state object was not written)."""
    return read_state(store)[0]


def ingest(
    settings: Settings,
    s3_client: Any,
    batch_ts: datetime | None = None,
    full_refresh: bool = False,
    on_step: StepHook | None = None,
    window: Window | None = None,
) -> IngestResult:
    """Run one batch identified by `batch_ts` (now, by default), holding the ingest lease.
    Replaying a batch id that already completed changes nothing and returns its manifest.

    With a `window`, the batch holds every row whose last_updated is in it rather than the
    changes since the bookmarks, and leaves the bookmarks as they are (etl.ingest.window)."""
    settings.require("totesys_db_url", "ingestion_bucket", "warehouse_db_url")
    batch_id = layout.batch_id_for(batch_ts or datetime.now(UTC))
    with hold(LeaseTerms.of(settings), "ingest") as lease:
        return _ingest(settings, s3_client, batch_id, full_refresh, on_step, lease, window)


def _ingest(
    settings: Settings,
    s3_client: Any,
    batch_id: str,
    full_refresh: bool,
    on_step: StepHook | None,
    lease: Lease,
    window: Window | None = None,
) -> IngestResult:
    step = on_step or (lambda _: None)
    store = ObjectStore(s3_client, settings.ingestion_bucket, create_only=True)
    manifest_key = layout.manifest_key(batch_id)

    existing = ingestion_manifest.read_key(store, manifest_key)
    if existing is not None:
        log_event(logger, "batch_already_complete", batch_id=batch_id)
        return IngestResult(batch_id, manifest_key, existing, "already complete")
    state, state_etag = read_state(store)  # the state is replaced only from this version
    reason = build.skip_reason(settings.tables, state, batch_id, full_refresh, window)
    if reason is not None:
        log_event(logger, "batch_skipped", batch_id=batch_id, reason=reason)
        # the covering batch holds this interval's changes: callers wait for its manifest
        assert state.batch_id is not None  # only a later batch covers a batch id
        covering = layout.manifest_key(state.batch_id)
        return IngestResult(batch_id, covering, ingestion_manifest.empty(batch_id), reason)

    remove_unfinished_batches(store, state.batch_id, lease)
    build.check_first_batch(settings.tables, state)
    extraction = write_files(settings, store, state, batch_id, full_refresh, window, lease, step)
    built = build.build(batch_id, state, extraction, full_refresh, settings.overlap, window)
    commit(store, built, state_etag, lease, step)
    result = IngestResult(batch_id, manifest_key, built.manifest)
    log_event(
        logger,
        "batch_complete",
        batch_id=batch_id,
        rows=result.rows,
        seconds=built.manifest["seconds"],
    )
    return result
