"""One writer per stage: an exclusive, fenced lease for ingest, transform and load.

Mechanism (docs/architecture.md, "Concurrency, leases and exit codes", says why):

- **Exclusion** is a PostgreSQL session-level advisory lock in the warehouse database,
  one key per stage, taken with `pg_try_advisory_lock` on a connection of its own. It
  needs no privilege on any table and dies with its session, so a holder that is
  SIGKILLed (the kernel closes the socket) frees it at once, and one that stops answering
  (SIGSTOP, lost network) frees it when the server ends its silent session:
  `idle_session_timeout` is set to the lease timeout and a heartbeat thread keeps a live
  holder's session busy every third of it. TCP keepalives and `tcp_user_timeout` make the
  holder notice a dead server as quickly.
- **Fencing** is a generation number per stage in `etl.stage_lease`, incremented by each
  new holder. A paused holder that resumes after another process took over still believes
  it holds the lock, so every commit point calls `check()`, which proves on the lease's
  own session that the session (hence the lock) is alive and that the generation is
  still ours; load repeats that check inside the warehouse transaction that commits its
  ledger row. Below the checks, the object store refuses what a late writer could still
  try: published objects are created with `If-None-Match: *` and the state objects are
  replaced with `If-Match` on the ETag read under the lease (etl.storage).

A second process of the same stage waits up to `Settings.lease_wait` for the lease, then
fails with LeaseBusyError, naming the holder, having written and deleted nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from etl import bookkeeping
from etl.config import Secret, Settings
from etl.database import APPLICATION_NAME as PIPELINE_APPLICATION
from etl.database import connect
from etl.errors import (
    ConfigError,
    EtlError,
    LeaseBusyError,
    LeaseLostError,
    is_transient_database_error,
    one_line,
)
from etl.logs import log_event

logger = logging.getLogger("etl.lease")

Connection = psycopg.Connection[tuple[Any, ...]]

STAGE_KEYS = {"ingest": 7_471_101, "transform": 7_471_102, "load": 7_471_103}
DDL_KEY = 7_471_100  # serialises the CREATE ... IF NOT EXISTS below between stages
POLL_SECONDS = 0.5

LEASE_DDL = """
CREATE TABLE IF NOT EXISTS etl.stage_lease (
    stage      text PRIMARY KEY,
    generation bigint NOT NULL,        -- fencing token: +1 for every new holder
    holder     text NOT NULL,          -- host and pid of the process holding it
    since      timestamptz NOT NULL
);
"""


@dataclass(frozen=True)
class Holder:
    generation: int
    holder: str
    since: datetime

    def describe(self) -> str:
        return f"{self.holder} since {self.since.isoformat(timespec='seconds')} (generation {self.generation})"


def holder_name() -> str:
    return f"host {socket.gethostname()} pid {os.getpid()}"


class Lease:
    """The held lease of one stage; `check()` before every write that commits something."""

    def __init__(self, stage: str, conn: Connection, generation: int, timeout: float) -> None:
        self.stage = stage
        self.generation = generation
        self._conn = conn
        self._lost: str | None = None
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, args=(timeout / 3,), name=f"lease-{stage}", daemon=True
        )
        self._heartbeat.start()

    def _beat(self, interval: float) -> None:
        """Keep the session from looking idle, so the server ends it only when this process
        stops running (paused, frozen, cut off)."""
        while not self._stop.wait(interval):
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error as error:
                self._lost = one_line(error)
                return

    def check(self, point: str) -> None:
        """Fail with LeaseLostError unless this process still holds the lease: a round trip
        on the lease's own session (if the server ended the session, the lock is gone) and
        the generation still ours."""
        try:
            row = self._conn.execute(
                "SELECT generation, holder, since FROM etl.stage_lease WHERE stage = %s",
                (self.stage,),
            ).fetchone()
        except psycopg.Error as error:
            self._lost = self._lost or one_line(error)
            row = None
        if self._lost is not None or row is None or int(row[0]) != self.generation:
            raise self._lost_error(point, row)

    def check_in(self, conn: Connection, point: str) -> None:
        """The same check inside another connection's transaction (load's warehouse
        transaction), so the commit that follows is fenced by the database itself: the
        row is share-locked until that transaction ends, and a successor's increment
        waits for it."""
        self.check(point)
        row = conn.execute(
            "SELECT generation, holder, since FROM etl.stage_lease WHERE stage = %s FOR SHARE",
            (self.stage,),
        ).fetchone()
        if row is None or int(row[0]) != self.generation:
            raise self._lost_error(point, row)

    def _lost_error(self, point: str, row: Any) -> LeaseLostError:
        if row is not None and int(row[0]) != self.generation:
            now = Holder(int(row[0]), str(row[1]), row[2]).describe()
            why = f"taken over by {now}"
        else:
            why = f"its session ended ({self._lost or 'no lease row'})"
        log_event(logger, "lease_lost", logging.WARNING, stage=self.stage, at=point, why=why)
        return LeaseLostError(
            f"the {self.stage} lease (generation {self.generation}) was lost before {point}:"
            f" {why}; nothing more written"
        )

    def release(self) -> None:
        self._stop.set()
        self._heartbeat.join(5)
        with contextlib.suppress(psycopg.Error):
            self._conn.close()  # the session's advisory lock goes with it


def _keepalive_options(timeout: float) -> dict[str, Any]:
    """libpq options: probe an idle connection often and give up on an unacknowledged send
    after `timeout`, so a holder notices a dead server (and the server's end is tuned by
    idle_session_timeout below)."""
    probe = max(1, int(timeout / 3))
    return {
        "keepalives": 1,
        "keepalives_idle": probe,
        "keepalives_interval": probe,
        "keepalives_count": 3,
        "tcp_user_timeout": int(timeout * 1000),
    }


def _ensure_table(conn: Connection) -> None:
    """The lease table in the loader's own bookkeeping schema (etl.bookkeeping refuses one
    that is not). The session's lock_timeout bounds the wait for the DDL key."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_KEY,))
        bookkeeping.ensure_schema(conn)
        conn.execute(LEASE_DDL.encode())


# who holds one advisory key of this database, whoever they are (a pipeline process or not)
_KEY_HOLDERS = """
SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.backend_start
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid = %s::oid AND l.objid = %s::oid
"""


def busy_holder(conn: Connection, stage: str) -> str:
    """Who really holds `stage`'s lock, from the server's own lock table: the pipeline
    process the lease row names, or a session that is not the pipeline's at all."""
    key = STAGE_KEYS[stage]
    rows = conn.execute(_KEY_HOLDERS, (key >> 32, key & 0xFFFFFFFF)).fetchall()
    recorded = current_holder(conn, stage)
    if not rows:
        return recorded.describe() if recorded else "another process (gone now)"
    pid, user, application, address, started = rows[0]
    # the server hides another login's application, address and start from non-superusers
    details = [f"login {user}"]
    if application is not None:
        details.append(f"application {application!r}")
    if address is not None:
        details.append(f"from {address}")
    if started is not None:
        details.append(f"connected {started:%Y-%m-%d %H:%M:%S}")
    session = f"server pid {pid} ({', '.join(details)})"
    if application == PIPELINE_APPLICATION and recorded is not None:
        return f"{recorded.describe()}, {session}"
    last = f"; the last pipeline holder was {recorded.describe()}" if recorded else ""
    return f"{session}, which is not a pipeline process{last}"


def current_holder(conn: Connection, stage: str) -> Holder | None:
    row = conn.execute(
        "SELECT generation, holder, since FROM etl.stage_lease WHERE stage = %s", (stage,)
    ).fetchone()
    return None if row is None else Holder(int(row[0]), str(row[1]), row[2])


@dataclass(frozen=True)
class LeaseTerms:
    """What taking a lease needs and nothing more: the warehouse that holds it, how long to
    wait for it, and how long a holder that stopped answering keeps it."""

    warehouse_db_url: Secret
    wait: timedelta
    timeout: timedelta

    @classmethod
    def of(cls, settings: Settings) -> LeaseTerms:
        settings.require("warehouse_db_url")
        assert settings.warehouse_db_url is not None
        return cls(settings.warehouse_db_url, settings.lease_wait, settings.lease_timeout)


def _wait_for_lock(conn: Connection, stage: str, wait: timedelta) -> None:
    """Try the stage's advisory lock every POLL_SECONDS until `wait` is over, then give up
    naming whoever holds it (a try-lock: a wait never blocks on a lock of unknown owner)."""
    deadline = time.monotonic() + wait.total_seconds()
    waited = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (STAGE_KEYS[stage],)).fetchone()
        if row is not None and row[0]:
            return
        if not waited:
            log_event(logger, "lease_wait", stage=stage)
            waited = True
        if time.monotonic() >= deadline:
            shown = busy_holder(conn, stage)
            raise LeaseBusyError(
                f"the {stage} lease is held by {shown}; gave up after"
                f" {wait.total_seconds():.0f}s, nothing written"
            )
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


@contextmanager
def hold(terms: LeaseTerms, stage: str) -> Iterator[Lease]:
    """Hold `stage`'s lease for the block: wait up to `terms.wait` for it, else
    LeaseBusyError naming the holder."""
    if stage not in STAGE_KEYS:
        raise ConfigError(f"no lease for stage {stage!r}")
    timeout = terms.timeout.total_seconds()
    conn = connect(
        terms.warehouse_db_url,
        f"the warehouse (which holds the {stage} lease)",
        **_keepalive_options(timeout),
    )
    try:
        conn.autocommit = True
        # the server ends a session silent for longer than this: its lock goes with it
        conn.execute(
            "SELECT set_config('idle_session_timeout', %s, false)", (str(int(timeout * 1000)),)
        )
        bookkeeping.bounded_locks(conn, terms.wait)
        _ensure_table(conn)
        _wait_for_lock(conn, stage, terms.wait)
        generated = conn.execute(
            "INSERT INTO etl.stage_lease AS l (stage, generation, holder, since)"
            " VALUES (%s, 1, %s, now()) ON CONFLICT (stage) DO UPDATE"
            " SET generation = l.generation + 1, holder = EXCLUDED.holder, since = now()"
            " RETURNING generation",
            (stage, holder_name()),
        ).fetchone()
        assert generated is not None
    except psycopg.Error as error:
        conn.close()
        raise EtlError(
            f"cannot take the {stage} lease in the warehouse: {one_line(error)}",
            transient=is_transient_database_error(error),
        ) from error
    except BaseException:
        conn.close()
        raise
    lease = Lease(stage, conn, int(generated[0]), timeout)
    log_event(logger, "lease_acquired", stage=stage, generation=lease.generation)
    try:
        yield lease
    finally:
        lease.release()
