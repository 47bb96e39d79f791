"""The local stack: real services that start, answer and stop without leftovers."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import uuid
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest

from devstack.processes import is_alive
from devstack.stack import LocalStack, StackEndpoints
from tests.conftest import REPO_ROOT


def test_up_down_leaves_no_process_behind(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "stack")
    endpoints = stack.up()
    assert all(is_alive(pid) for pid in endpoints.pids().values())
    assert stack.up() == endpoints, "a second up reuses the running stack"

    stack.down()

    assert not any(is_alive(pid) for pid in endpoints.pids().values())
    assert stack.running() is None


def test_data_survives_down_and_up(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "stack")
    with psycopg.connect(stack.up().totesys_db_url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    stack.down()
    try:
        with psycopg.connect(stack.up().totesys_db_url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
    finally:
        stack.down()


def test_cli_up_status_down(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "devstack", "--state-dir", str(tmp_path / "s"), *args]
        return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    up = cli("up")
    assert up.returncode == 0, up.stderr
    for name in (
        "TOTESYS_DB_URL",
        "WAREHOUSE_DB_URL",
        "AWS_ENDPOINT_URL",
        "SMTP_HOST",
        "SMTP_PORT",
    ):
        assert f"export {name}=" in up.stdout
    endpoints = LocalStack(tmp_path / "s").running()
    assert endpoints is not None
    assert cli("status").returncode == 0

    down = cli("down")

    assert down.returncode == 0, down.stderr
    assert cli("status").returncode == 1
    assert not any(is_alive(pid) for pid in endpoints.pids().values())


def test_wrong_password_is_refused(stack: StackEndpoints) -> None:
    wrong = stack.totesys_db_url.replace(stack.pg_password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_buckets_exist_and_objects_round_trip(stack: StackEndpoints) -> None:
    s3 = stack.s3_client()
    names = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert {stack.ingestion_bucket, stack.processed_bucket} <= names
    key = f"roundtrip/{uuid.uuid4()}.csv"
    body = b'id,name\n1,"O\'Keefe, Irving"\n'

    s3.put_object(Bucket=stack.ingestion_bucket, Key=key, Body=body)

    assert s3.get_object(Bucket=stack.ingestion_bucket, Key=key)["Body"].read() == body


def test_email_sent_over_smtp_arrives_in_the_sink(stack: StackEndpoints) -> None:
    subject = f"totesys alert {uuid.uuid4()}"
    message = EmailMessage()
    message["From"] = "airflow@example.com"
    message["To"] = "data-team@example.com"
    message["Subject"] = subject
    message.set_content("task ingest failed: £ and naïve unicode survive")

    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)

    received = [m for m in stack.messages() if m["Subject"] == subject]
    assert len(received) == 1
    body = received[0].get_body()
    assert isinstance(body, EmailMessage)
    assert "£ and naïve unicode survive" in body.get_content()
    assert received[0]["To"] == "data-team@example.com"
