"""How local Airflow connects to its SQLite metadata DB: `[database]
sql_alchemy_connect_args` names this dict (an import path, so it lives in a module).

SQLite lets one writer in at a time and Python's driver gives up after 5 s. With the
scheduler, the dag-processor, the triggerer and the api-server all writing, a busy machine
waits longer than that, and Airflow 3.0's `POST /backfills` then fails half-way: the
backfill and its first run exist, the other runs do not. Waiting up to a minute for the
lock turns that into a slow request instead."""

from __future__ import annotations

from typing import Any

CONNECT_ARGS: dict[str, Any] = {"timeout": 60}
