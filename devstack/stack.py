"""Start, find and stop the local stack as one unit.

The same code serves the CLI (`python -m devstack up|down|status`), the demo and the
test fixtures, so what the tests exercise is what a person runs. State (PostgreSQL data,
logs, kept emails, pids and ports) lives under one directory; `down` removes nothing but
the running processes, so data survives a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3

from devstack.postgres import HOST, EmbeddedPostgres, database_url
from devstack.processes import free_port, is_alive, spawn, terminate, wait_for_port
from devstack.smtp_sink import read_messages

TOTESYS_DATABASE = "totesys"
WAREHOUSE_DATABASE = "warehouse"
REGION = "eu-west-2"
# moto accepts any credentials; these are placeholders, not secrets.
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
SERVICE_START_TIMEOUT = 60.0
METRICS_FILE = "metrics.jsonl"  # under the state directory


@dataclass(frozen=True)
class StackEndpoints:
    """How to reach a running stack; `as_env()` is what the pipeline's settings read."""

    state_dir: str
    pg_port: int
    pg_password: str
    s3_port: int
    smtp_port: int
    ingestion_bucket: str
    processed_bucket: str
    pg_pid: int
    s3_pid: int
    smtp_pid: int

    @property
    def totesys_db_url(self) -> str:
        return database_url(self.pg_password, self.pg_port, TOTESYS_DATABASE)

    @property
    def warehouse_db_url(self) -> str:
        return database_url(self.pg_password, self.pg_port, WAREHOUSE_DATABASE)

    @property
    def aws_endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def maildir(self) -> Path:
        return Path(self.state_dir) / "mail"

    def pids(self) -> dict[str, int]:
        return {"postgres": self.pg_pid, "s3": self.s3_pid, "smtp": self.smtp_pid}

    def as_env(self) -> dict[str, str]:
        return {
            "TOTESYS_DB_URL": self.totesys_db_url,
            "WAREHOUSE_DB_URL": self.warehouse_db_url,
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            **MOTO_CREDENTIALS,
            "INGESTION_BUCKET": self.ingestion_bucket,
            "PROCESSED_BUCKET": self.processed_bucket,
            "SMTP_HOST": HOST,
            "SMTP_PORT": str(self.smtp_port),
            # the pipeline's metrics as JSON lines beside the stack (`python -m etl status`)
            "METRICS_SINK": "local",
            "METRICS_FILE": str(Path(self.state_dir) / METRICS_FILE),
            "PIPELINE_ENVIRONMENT": "local",
        }

    def s3_client(self) -> Any:
        """A boto3 S3 client for the moto server (its placeholder credentials, not env)."""
        return boto3.client(
            "s3",
            endpoint_url=self.aws_endpoint_url,
            region_name=REGION,
            aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def messages(self) -> list[EmailMessage]:
        """Every email the SMTP sink has received, oldest first."""
        return read_messages(self.maildir)


@dataclass(frozen=True)
class StackPorts:
    """0 means pick a free port at start."""

    postgres: int = 0
    s3: int = 0
    smtp: int = 0


class LocalStack:
    """The three services under `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        ports: StackPorts | None = None,
        ingestion_bucket: str = "totesys-ingestion",
        processed_bucket: str = "totesys-processed",
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.ports = ports or StackPorts()
        self.ingestion_bucket = ingestion_bucket
        self.processed_bucket = processed_bucket

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def running(self) -> StackEndpoints | None:
        """The endpoints of this directory's stack if every service is alive."""
        if not self.state_file.exists():
            return None
        endpoints = StackEndpoints(**json.loads(self.state_file.read_text()))
        if all(is_alive(pid) for pid in endpoints.pids().values()):
            return endpoints
        return None

    def up(self) -> StackEndpoints:
        """Start every service (or return the running stack); idempotent."""
        current = self.running()
        if current is not None:
            return current
        self.down()  # a half-running stack is stopped before a clean start
        self.state_dir.mkdir(parents=True, exist_ok=True)
        started: list[int] = []
        try:
            pg_port = self.ports.postgres or free_port()
            password = self._password()
            postgres = EmbeddedPostgres(self.state_dir / "postgres", pg_port)
            pg_pid = postgres.start(password, (TOTESYS_DATABASE, WAREHOUSE_DATABASE))
            started.append(pg_pid)
            s3_port, s3_pid = self._start_moto()
            started.append(s3_pid)
            smtp_port, smtp_pid = self._start_smtp_sink()
            started.append(smtp_pid)
            endpoints = StackEndpoints(
                state_dir=str(self.state_dir),
                pg_port=pg_port,
                pg_password=password,
                s3_port=s3_port,
                smtp_port=smtp_port,
                ingestion_bucket=self.ingestion_bucket,
                processed_bucket=self.processed_bucket,
                pg_pid=pg_pid,
                s3_pid=s3_pid,
                smtp_pid=smtp_pid,
            )
            self._create_buckets(endpoints)
        except BaseException:
            EmbeddedPostgres(self.state_dir / "postgres", 0).stop()
            for pid in started:
                terminate(pid)
            raise
        self._write_state(endpoints)
        return endpoints

    def down(self) -> None:
        """Stop every service this directory started; data stays for the next `up`. The
        other services are stopped even when PostgreSQL's shutdown fails."""
        try:
            if (self.state_dir / "postgres" / "PG_VERSION").exists():
                EmbeddedPostgres(self.state_dir / "postgres", 0).stop()
        finally:
            if self.state_file.exists():
                endpoints = StackEndpoints(**json.loads(self.state_file.read_text()))
                for pid in endpoints.pids().values():
                    terminate(pid)

    def _password(self) -> str:
        """The superuser password is made once per state directory and kept with the data."""
        path = self.state_dir / "pg_password"
        if not path.exists():
            path.write_text(secrets.token_hex(16))
            path.chmod(0o600)
        return path.read_text().strip()

    def _start_moto(self) -> tuple[int, int]:
        port = self.ports.s3 or free_port()
        log = self.state_dir / "logs" / "moto.log"
        argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
        pid = spawn(argv, log)
        wait_for_port("moto S3 server", HOST, port, pid, log, SERVICE_START_TIMEOUT)
        return port, pid

    def _start_smtp_sink(self) -> tuple[int, int]:
        port = self.ports.smtp or free_port()
        log = self.state_dir / "logs" / "smtp.log"
        maildir = self.state_dir / "mail"
        argv = [sys.executable, "-m", "devstack.smtp_sink", "--host", HOST]
        argv += ["--port", str(port), "--maildir", str(maildir)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        pid = spawn(argv, log, env=env)
        wait_for_port("SMTP sink", HOST, port, pid, log, SERVICE_START_TIMEOUT)
        return port, pid

    def _create_buckets(self, endpoints: StackEndpoints) -> None:
        s3 = endpoints.s3_client()
        for bucket in (endpoints.ingestion_bucket, endpoints.processed_bucket):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )

    def _write_state(self, endpoints: StackEndpoints) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(endpoints), indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)


@contextmanager
def local_stack(state_dir: Path, ports: StackPorts | None = None) -> Iterator[StackEndpoints]:
    """A stack for the duration of a `with` block; nothing is left running afterwards."""
    stack = LocalStack(state_dir, ports)
    endpoints = stack.up()
    try:
        yield endpoints
    finally:
        stack.down()
