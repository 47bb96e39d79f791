"""Bad inputs under the real DAG (`airflow dags test`, no retries): each fails the task that
meets it with one clear line, sends exactly one alert email naming the problem, and writes
nothing downstream of it; a wrong database password appears nowhere."""

from __future__ import annotations

import html
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devstack.airflow import (
    DagTestRun,
    airflow_cli,
    airflow_env,
    dags_test,
    metadata_database,
)
from devstack.postgres import SUPERUSER, database_url
from devstack.stack import WAREHOUSE_DATABASE, StackEndpoints
from etl.config import Settings
from etl.ingest.run import ingest
from etl.load.loader import init_warehouse
from etl.storage import ObjectStore
from etl.transform.batch import transform_pending
from etl.warehouse import WAREHOUSE_TABLES
from simulator.seed import SeedPlan, seed_totesys
from tests.dags.tasks import ETL_TASKS
from tests.etl.load import warehouse_rows
from tests.etl.load.test_loader import rename_paid, rewrite_processed

NO_RETRIES = {"AIRFLOW__TOTESYS__RETRIES": "0"}
FORCE_LOAD = {"force_load": True}
TASKS = ETL_TASKS


def failed_at(task: str) -> dict[str, str]:
    """The states of a run whose `task` failed: before it success, after it upstream_failed."""
    index = TASKS.index(task)
    return {
        name: "success" if i < index else "failed" if i == index else "upstream_failed"
        for i, name in enumerate(TASKS)
    }


@pytest.fixture(scope="module")
def seeded(airflow_stack: StackEndpoints) -> Settings:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.03), replace=True)
    return Settings.from_env(airflow_stack.as_env())


@pytest.fixture
def fresh(airflow_stack: StackEndpoints, seeded: Settings) -> Settings:
    """Empty buckets and an empty warehouse: whatever a run writes is visible."""
    s3 = airflow_stack.s3_client()
    for bucket in (seeded.ingestion_bucket, seeded.processed_bucket):
        store = ObjectStore(s3, bucket)
        for key in list(store.keys("")):
            store.delete(key)
    admin = database_url(airflow_stack.pg_password, airflow_stack.pg_port, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in ("DROP DATABASE {} WITH (FORCE)", "CREATE DATABASE {}"):
            conn.execute(sql.SQL(statement).format(sql.Identifier(WAREHOUSE_DATABASE)))
    init_warehouse(seeded)
    return seeded


@dataclass(frozen=True)
class Outcome:
    run: DagTestRun
    states: dict[str, str]  # every task's final state
    sent: list[EmailMessage]  # the emails the run sent

    @property
    def subjects(self) -> list[str]:
        return [str(m["Subject"]).split(" (run")[0] for m in self.sent]


def run_dag(
    stack: StackEndpoints,
    home: Path,
    logical_date: datetime,
    conf: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Outcome:
    """One `airflow dags test` run without retries, the state of each task as Airflow's CLI
    reports it (the run's own output differs between Airflow versions), its emails."""
    seen = len(stack.messages())
    settings = airflow_env(stack, home, {**NO_RETRIES, **(env or {})})
    run = dags_test(settings, logical_date.isoformat(), conf)
    found = re.search(r"run_id=(manual__[^\s,']+)", run.output)
    assert found, run.output[-3000:]
    listed = airflow_cli(
        settings, "tasks", "states-for-dag-run", "totesys_etl", found.group(1), "-o", "json"
    )
    states = {t["task_id"]: t["state"] for t in json.loads(listed.stdout.strip().splitlines()[-1])}
    return Outcome(run, states, stack.messages()[seen:])


def error_row(email: EmailMessage) -> str:
    """The alert's Error cell as a person reads it (the template HTML-escapes it)."""
    body: Any = email.get_body()
    text = html.unescape(str(body.get_content()))
    return text.split("<td>Error</td><td>", 1)[1].split("</td>", 1)[0]


def object_keys(s3: Any, bucket: str) -> list[str]:
    return list(ObjectStore(s3, bucket).keys(""))


def warehouse_is_empty(settings: Settings) -> bool:
    return warehouse_rows.ledger(settings) == [] and all(
        warehouse_rows.rows(settings, table) == [] for table in WAREHOUSE_TABLES
    )


@pytest.mark.parametrize(
    ("logical_date", "conf", "option", "error"),
    [
        (
            "2026-11-28T14:00:00+00:00",
            {"tables": ["currency", "payment; DROP TABLE staff"]},
            {},
            "ConfigError: unknown table(s) 'payment; DROP TABLE staff': allowed are counterparty, ",
        ),
        (
            "2026-11-28T14:05:00+00:00",
            None,
            {"AIRFLOW__TOTESYS__WAREHOUSE_SCHEMA": "public; DROP TABLE dim_staff"},
            "ConfigError: WAREHOUSE_SCHEMA 'public; DROP TABLE dim_staff' is not a plain identifier",
        ),
    ],
    ids=["tables_param", "warehouse_schema_option"],
)
def test_a_name_that_tries_sql_injection_fails_ingest_and_writes_nothing(
    airflow_stack: StackEndpoints,
    airflow_home: Path,
    fresh: Settings,
    logical_date: str,
    conf: dict[str, Any] | None,
    option: dict[str, str],
    error: str,
) -> None:
    s3 = airflow_stack.s3_client()

    outcome = run_dag(
        airflow_stack, airflow_home, datetime.fromisoformat(logical_date), conf, option
    )

    assert outcome.states == failed_at("ingest"), outcome.run.output[-3000:]
    assert outcome.subjects == ["[totesys] totesys_etl.ingest failed"]
    assert error_row(outcome.sent[0]).startswith(error)
    assert object_keys(s3, fresh.ingestion_bucket) == []
    assert object_keys(s3, fresh.processed_bucket) == []
    assert warehouse_is_empty(fresh), "dim_staff is there, and empty"
    with psycopg.connect(airflow_stack.totesys_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM staff").fetchone() == (20,), "staff is intact"


def test_a_csv_edited_by_hand_fails_transform_naming_table_and_column(
    airflow_stack: StackEndpoints, airflow_home: Path, fresh: Settings
) -> None:
    when = datetime.fromisoformat("2026-11-28T14:15:00+00:00")
    s3 = airflow_stack.s3_client()
    # a batch waiting for transform, with its payment extract edited by hand
    earlier = ingest(fresh, s3, batch_ts=when - timedelta(minutes=5))
    ingestion = ObjectStore(s3, fresh.ingestion_bucket)
    csv = earlier.manifest["tables"]["payment"]["file"]
    assert csv is not None
    body = ingestion.get_bytes(csv) or b""
    header, rows = body.split(b"\n", 1)
    assert b",paid," in header
    ingestion.put_bytes(csv, header.replace(b",paid,", b",is_paid,") + b"\n" + rows)

    outcome = run_dag(airflow_stack, airflow_home, when, FORCE_LOAD)

    assert outcome.states == failed_at("transform"), outcome.run.output[-3000:]
    assert outcome.subjects == ["[totesys] totesys_etl.transform failed"]
    assert error_row(outcome.sent[0]) == (
        "SchemaDriftError: payment: missing column(s) paid; unexpected column(s) is_paid"
        f" in s3://{fresh.ingestion_bucket}/{csv}"
    )
    assert object_keys(s3, fresh.processed_bucket) == []
    assert warehouse_is_empty(fresh)


def test_a_processed_parquet_with_a_wrong_column_fails_load_and_the_warehouse_is_untouched(
    airflow_stack: StackEndpoints, airflow_home: Path, fresh: Settings
) -> None:
    when = datetime.fromisoformat("2026-11-28T14:30:00+00:00")
    s3 = airflow_stack.s3_client()
    ingest(fresh, s3, batch_ts=when - timedelta(minutes=5))
    [waiting] = transform_pending(fresh, s3)  # a batch waiting for load
    parquet = rewrite_processed(
        s3, fresh.processed_bucket, waiting.manifest_key, "fact_payment", rename_paid
    )

    outcome = run_dag(airflow_stack, airflow_home, when, FORCE_LOAD)

    assert outcome.states == failed_at("load"), outcome.run.output[-3000:]
    assert outcome.subjects == ["[totesys] totesys_etl.load failed"]
    assert error_row(outcome.sent[0]) == (
        "SchemaDriftError: fact_payment: missing column(s) paid; unexpected column(s) is_paid"
        f" in s3://{fresh.processed_bucket}/{parquet}"
    )
    assert warehouse_is_empty(fresh), "the batch's dimensions were rolled back with it"


def test_a_wrong_database_password_fails_with_one_email_and_appears_nowhere(
    airflow_stack: StackEndpoints, airflow_home: Path, fresh: Settings
) -> None:
    wrong = f"Wr0ng-{secrets.token_hex(8)}"
    connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": airflow_stack.pg_port,
                  "login": SUPERUSER, "password": wrong, "schema": "totesys"}  # fmt: skip
    s3 = airflow_stack.s3_client()

    outcome = run_dag(
        airflow_stack, airflow_home, datetime.fromisoformat("2026-11-28T14:45:00+00:00"),
        env={"AIRFLOW_CONN_TOTESYS_DB": json.dumps(connection)},
    )  # fmt: skip

    assert outcome.states == failed_at("ingest"), outcome.run.output[-3000:]
    assert outcome.subjects == ["[totesys] totesys_etl.ingest failed"]
    where = f"127.0.0.1:{airflow_stack.pg_port}/totesys"
    error = error_row(outcome.sent[0])
    assert error.startswith(f"SourceUnavailableError: cannot connect to totesys at {where}")
    assert 'password authentication failed for user "postgres"' in error
    assert object_keys(s3, fresh.ingestion_bucket) == []
    assert warehouse_is_empty(fresh)
    assert "password authentication failed" in outcome.run.output, "the task log was searched"
    for secret in (wrong, airflow_stack.pg_password):
        assert places_holding(secret, outcome.run, airflow_stack, airflow_home) == []
    service_logs = [p for p in Path(airflow_stack.state_dir).rglob("*.log") if p.is_file()]
    assert service_logs, "PostgreSQL's, moto's and the SMTP sink's logs"
    assert not [str(p) for p in service_logs if wrong.encode() in p.read_bytes()]


def places_holding(secret: str, run: DagTestRun, stack: StackEndpoints, home: Path) -> list[str]:
    """Everywhere a password could leak: the run's output (task log included), every file
    under the Airflow home (logs, config), every row of its metadata database (in the
    stack's PostgreSQL), every email. `airflow dags test` prints, at
    debug level, the values it registers with the secrets masker (MaskSecret messages of its
    own supervisor protocol); those lines are the masker's input, not a leak."""
    places = [
        f"output: {line[:160]}"
        for line in run.output.splitlines()
        if secret in line and "MaskSecret(" not in line
    ]
    places += [str(p) for p in home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    places += [f"email {m['Subject']}" for m in stack.messages() if secret in m.as_string()]
    return places + metadata_holding(secret, stack, home)


def metadata_holding(secret: str, stack: StackEndpoints, home: Path) -> list[str]:
    """The tables of the home's metadata database with a row holding `secret` (bytea
    columns searched as raw bytes, every other value as text)."""

    def holds(value: object) -> bool:
        return secret.encode() in value if isinstance(value, bytes) else secret in str(value)

    url = database_url(stack.pg_password, stack.pg_port, metadata_database(home))
    found = []
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        names = [name for (name,) in tables.fetchall()]
        assert "dag_run" in names, "the metadata database was searched"
        for name in names:
            rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(name)))
            if any(holds(value) for row in rows for value in row):
                found.append(f"metadata table {name}")
    return found
