"""A load run's warehouse session: one connection for the ledger, the bookkeeping and
every batch, prepared once per run under the load lease.

The lease keeps a connection of its own (etl.lease): its heartbeat thread runs a
statement every third of the lease timeout, and on the batches' connection that statement
would land inside a batch's transaction, wait behind a long COPY, and fail in a
transaction aborted on purpose (insert_facts catches a missing dimension row under a
savepoint), which would read as a lost lease. Every other warehouse read and write of
the run shares the one connection here.

The connection's `idle_in_transaction_session_timeout` is the lease timeout, so a loader
paused inside a transaction is rolled back by the server and cannot commit afterwards,
nor keep its locks from its successor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from etl import bookkeeping
from etl.config import SET_ASIDE, Settings
from etl.database import connect
from etl.lease import Lease
from etl.load import ledger, too_large, waiting
from etl.load.apply import Connection, LoadResult, StepHook, load_batch
from etl.load.target import Target
from etl.logs import log_event
from etl.manifests import processed as processed_manifest
from etl.storage import ObjectStore

logger = logging.getLogger("etl.load")


def connect_warehouse(settings: Settings) -> Connection:
    return connect(settings.warehouse_db_url, "the warehouse")


def prepare_session(
    conn: Connection, settings: Settings, target: Target
) -> dict[str, list[too_large.Limit]]:
    """Before a loader's first batch: a transaction left open by a paused loader is rolled
    back by the server; the warehouse has the columns we write; the bookkeeping exists.
    Returns the target columns narrower than the contract (etl.load.too_large)."""
    timeout = str(int(settings.lease_timeout.total_seconds() * 1000))
    conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)", (timeout,))
    bookkeeping.bounded_locks(conn, settings.lease_wait)
    for warning in target.check(conn):
        log_event(logger, "warehouse_warning", logging.WARNING, detail=warning)
    conn.commit()
    ledger.ensure_ledger(conn)
    if settings.bad_row_policy == SET_ASIDE:
        waiting.ensure(conn, target)
    too_large.ensure(conn)
    limits = too_large.read_limits(conn, target)
    conn.commit()
    return limits


@dataclass(frozen=True)
class LoadSession:
    """What every batch of a run is applied with: the prepared connection, the held lease,
    the target's names and the limits of its columns."""

    settings: Settings
    conn: Connection
    lease: Lease
    target: Target
    processed: ObjectStore
    limits: dict[str, list[too_large.Limit]]


def start_session(
    settings: Settings, s3_client: Any, conn: Connection, lease: Lease
) -> LoadSession:
    """`conn` prepared for a run's batches (prepare_session), under `lease`."""
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    limits = prepare_session(conn, settings, target)
    processed = ObjectStore(s3_client, settings.processed_bucket)
    return LoadSession(settings, conn, lease, target, processed, limits)


def apply_batches(
    session: LoadSession,
    manifest_keys: Iterable[str],
    on_step: StepHook | None,
    replay: tuple[str, ...] = (),
) -> list[LoadResult]:
    """load_batch for each manifest, in order; the batches it applied."""
    step = on_step or (lambda _: None)
    results = []
    for key in manifest_keys:
        manifest = processed_manifest.read_key(session.processed, key)
        assert manifest is not None
        result = load_batch(session.conn, session.target, session.processed, manifest, step,
                            session.lease, session.settings.bad_row_policy, replay,
                            session.limits)  # fmt: skip
        if result is not None:
            results.append(result)
    return results
