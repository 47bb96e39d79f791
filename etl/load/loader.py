"""Load processed batches, oldest first, each in one transaction with its ledger row
(etl.load.apply), on one warehouse connection per run (etl.load.session).

One loader at a time: the run holds the load lease (etl.lease), and each batch's
transaction re-checks it just before it records its ledger row and commits. `replay`
(etl.load.replay) applies loaded batches again to damaged tables under the same lease.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from etl import layout
from etl.config import Settings
from etl.errors import EtlError
from etl.lease import LeaseTerms, hold
from etl.load import ledger
from etl.load.apply import Connection, LoadResult, StepHook
from etl.load.replay import replay
from etl.load.session import apply_batches, connect_warehouse, start_session
from etl.load.target import Target
from etl.warehouse import WAREHOUSE_TABLES

# names other modules import from here
__all__ = [
    "LoadResult",
    "LoadRun",
    "connect_warehouse",
    "init_warehouse",
    "load_pending",
    "loading",
    "replay",
]


@dataclass(frozen=True)
class LoadRun:
    """A finished load: the batches it applied, the newest batch the ledger now holds, and
    the run's warehouse connection, still open (the lease released) so what the caller
    reads next (the lag, the rows set aside for the email) needs no connection of its own."""

    conn: Connection
    results: list[LoadResult]
    last_loaded: str | None


def load_pending(
    settings: Settings, s3_client: Any, on_step: StepHook | None = None
) -> list[LoadResult]:
    """Load every processed batch not in the ledger yet, oldest first, holding the load
    lease."""
    with loading(settings, s3_client, on_step) as run:
        return run.results


@contextmanager
def loading(
    settings: Settings, s3_client: Any, on_step: StepHook | None = None
) -> Iterator[LoadRun]:
    """load_pending, then the run's connection kept open for the block (committed and
    outside any transaction; the block must commit what it reads before a long wait, as
    the server ends a session idle in a transaction after the lease timeout)."""
    settings.require("warehouse_db_url", "processed_bucket")
    with ExitStack() as kept:
        with hold(LeaseTerms.of(settings), "load") as lease, ExitStack() as during:
            conn = during.enter_context(connect_warehouse(settings))
            session = start_session(settings, s3_client, conn, lease)
            before = ledger.last_loaded(conn)
            conn.commit()
            start_after = layout.manifest_key(before) if before else ""
            keys = session.processed.keys(layout.MANIFEST_PREFIX, start_after=start_after)
            results = apply_batches(session, keys, on_step)
            # a failed run closes its connection before the lease goes, as it always did;
            # a finished one keeps it past the lease for the block
            kept.push(during.pop_all())
        # batches apply in order under the lease, each after the ledger's newest
        last = results[-1].batch_id if results else before
        yield LoadRun(conn, results, last)


def init_warehouse(settings: Settings) -> str:
    """Create the warehouse schema where none exists; leave a prepared one alone."""
    settings.require("warehouse_db_url")
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    with connect_warehouse(settings) as conn:
        existing = target.existing_tables(conn)
        expected = {settings.warehouse_names.table(t) for t in WAREHOUSE_TABLES}
        if existing == expected:
            target.check(conn)
            message = "warehouse already has its 11 tables; left as it is"
        elif existing:
            missing = ", ".join(sorted(expected - existing))
            raise EtlError(
                f"warehouse is partly there (missing {missing}); refusing to guess, create them by hand"
            )
        else:
            with conn.transaction():
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(settings.warehouse_schema)
                    )
                )
                for statement in target.create_ddl():
                    conn.execute(statement)
            message = "warehouse created: 8 dimensions, 3 facts, version indexes"
        ledger.ensure_ledger(conn)
    return message
