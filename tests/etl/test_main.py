"""`python -m etl`: the command-line contract other tools drive."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from tests.conftest import REPO_ROOT


def run_etl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl", *args],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def env_for(stack: StackEndpoints, settings: Settings) -> dict[str, str]:
    return {
        **stack.as_env(),
        "TOTESYS_DB_URL": settings.totesys_db_url.reveal(),  # type: ignore[union-attr]
        "INGESTION_BUCKET": settings.ingestion_bucket,
        "PROCESSED_BUCKET": settings.processed_bucket,
        "WAREHOUSE_DB_URL": settings.warehouse_db_url.reveal(),  # type: ignore[union-attr]
    }


def test_ingest_then_transform(stack: StackEndpoints, settings: Settings) -> None:
    env = env_for(stack, settings)
    assert run_etl(env, "ingest").returncode == 0

    transform = run_etl(env, "transform")
    again = run_etl(env, "transform")

    assert transform.returncode == 0, transform.stderr
    assert "fact_sales_order=" in transform.stdout and "dim_date=" in transform.stdout
    assert again.stdout.strip() == "no ingestion batch waiting to be transformed"
    unknown = run_etl(env, "transform", "--batch-id", "20200101T000000000000Z")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: no ingestion batch 20200101T000000000000Z")


def test_ingest_status_init_run_status(stack: StackEndpoints, settings: Settings) -> None:
    env = env_for(stack, settings)

    ingest = run_etl(env, "ingest")
    again = run_etl(env, "ingest")
    before = run_etl(env, "status")
    init = run_etl(env, "init-warehouse")
    run = run_etl(env, "run")
    after = run_etl(env, "status")

    assert ingest.returncode == 0, ingest.stderr
    assert "sales_order=" in ingest.stdout and "manifest s3://" in ingest.stdout
    assert "0 rows (no changes)" in again.stdout
    assert before.returncode == 0, before.stderr
    assert "watermarks (last_updated):" in before.stdout
    assert before.stdout.count(" rows=") == 2
    assert "pending transform: 2 batch(es)" in before.stdout
    assert "freshness: unknown (warehouse: relation" in before.stdout
    assert init.stdout.strip() == "warehouse created: 8 dimensions, 3 facts, version indexes"
    assert run.returncode == 0, run.stderr
    assert "loaded " in run.stdout and "fact_payment=+" in run.stdout
    assert "pending transform: 0 batch(es)" in after.stdout
    assert "pending load: 0 batch(es)" in after.stdout
    assert "behind source by 0s" in after.stdout
    everything = "".join(r.stdout + r.stderr for r in (ingest, again, before, init, run, after))
    assert settings.totesys_db_url.reveal() not in everything  # type: ignore[union-attr]
    assert stack.pg_password not in everything


@pytest.mark.parametrize(
    ("change", "message", "code"),
    [
        (
            {"TOTESYS_TABLES": "payment,payment;DROP TABLE staff"},
            "error: unknown table(s) 'payment;DROP TABLE staff'",
            1,
        ),
        ({"TOTESYS_DB_URL": ""}, "error: missing setting(s): TOTESYS_DB_URL", 1),
        (
            {"INGEST_OVERLAP_SECONDS": "soon"},
            "error: INGEST_OVERLAP_SECONDS must be a number of seconds",
            1,
        ),
        (  # an outage, not a bad input: transient, retried
            {"TOTESYS_DB_URL": "postgresql://postgres:pw@127.0.0.1:1/totesys"},
            "error: cannot connect to totesys",
            69,
        ),
        (
            {"INGESTION_BUCKET": "no-such-bucket-xyz"},
            "error: cannot read s3://no-such-bucket-xyz/",
            1,
        ),
        (
            {"TOTESYS_DB_URL": "postgresql://u:12/s3cret@127.0.0.1:1/db"},
            "error: the totesys URL is malformed",
            1,
        ),
        (
            {"TOTESYS_DB_URL": "postgresql://u:p%zzs3cret@127.0.0.1:1/db"},
            "error: the totesys URL is malformed",
            1,
        ),
        ({"LEASE_WAIT_SECONDS": "a minute"}, "error: LEASE_WAIT_SECONDS must be a number", 1),
    ],
)
def test_bad_input_is_one_clear_line(
    stack: StackEndpoints, settings: Settings, change: dict[str, str], message: str, code: int
) -> None:
    result = run_etl({**env_for(stack, settings), **change}, "ingest")

    assert result.returncode == code
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
