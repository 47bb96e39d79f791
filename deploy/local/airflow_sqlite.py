"""How local Airflow connects to its SQLite metadata DB: `[database]
sql_alchemy_connect_args` names this dict (an import path, so it lives in a module).

SQLite lets one writer in at a time, and Python's driver gives up waiting for the lock
after 5 s. With the scheduler, the dag-processor, the triggerer, the api-server and the
tasks all writing, a busy machine waits longer than that; a minute turns those failures
into slow requests. It cannot help where SQLite refuses at once rather than wait (a read
transaction that would deadlock by upgrading to a write): Airflow 3.0's `POST /backfills`
can still fail half-way under heavy load, leaving a backfill with only its first runs.
Running one `airflow standalone` at a time on a small machine keeps that rare; MWAA's
PostgreSQL metadata DB does not have it."""

from __future__ import annotations

from typing import Any

CONNECT_ARGS: dict[str, Any] = {"timeout": 60}
