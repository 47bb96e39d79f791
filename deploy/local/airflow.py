"""Airflow wired to the local stack: the environment, the metadata DB, and CLI runs.

Connections come as AIRFLOW_CONN_* JSON (the same ids the DAG uses on MWAA), the DAG's own
settings as AIRFLOW__TOTESYS__*; the metadata DB is SQLite under the given home.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.postgres import HOST, SUPERUSER
from deploy.local.stack import (
    MOTO_CREDENTIALS,
    REGION,
    TOTESYS_DATABASE,
    WAREHOUSE_DATABASE,
    StackEndpoints,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _postgres(endpoints: StackEndpoints, database: str) -> str:
    return json.dumps({
        "conn_type": "postgres", "host": HOST, "port": endpoints.pg_port, "login": SUPERUSER,
        "password": endpoints.pg_password, "schema": database,
    })  # fmt: skip


def airflow_env(
    endpoints: StackEndpoints, home: Path, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """os.environ plus everything Airflow needs to run the DAG against this stack."""
    aws = {
        "conn_type": "aws",
        "login": MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "password": MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "extra": {"region_name": REGION, "endpoint_url": endpoints.aws_endpoint_url},
    }
    smtp = {"conn_type": "smtp", "host": HOST, "port": endpoints.smtp_port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "totesys-airflow@localhost"}}  # fmt: skip
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "dags")]),
        # Airflow's components start each other as `airflow ...`: this venv's first on PATH
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "AIRFLOW_CONN_TOTESYS_DB": _postgres(endpoints, TOTESYS_DATABASE),
        "AIRFLOW_CONN_WAREHOUSE_DB": _postgres(endpoints, WAREHOUSE_DATABASE),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp),
        "AIRFLOW__TOTESYS__INGESTION_BUCKET": endpoints.ingestion_bucket,
        "AIRFLOW__TOTESYS__PROCESSED_BUCKET": endpoints.processed_bucket,
    }
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key, None)  # S3 access goes through the aws_default connection only
    env.update(settings or {})
    return env


def airflow_cli(
    env: Mapping[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the `airflow` command of this interpreter's environment."""
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def migrate(env: Mapping[str, str]) -> None:
    result = airflow_cli(env, "db", "migrate")
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed: {result.stderr.strip().splitlines()[-1:]}")


@dataclass(frozen=True)
class DagTestRun:
    succeeded: bool
    task_states: dict[str, str]
    output: str


def dags_test(
    env: Mapping[str, str],
    logical_date: str,
    conf: Mapping[str, object] | None = None,
    dag_id: str = "totesys_etl",
) -> DagTestRun:
    """`airflow dags test <dag_id> <date>`: one whole run in-process, sensors included.

    The DAGs are parsed into the metadata DB first, with the same settings: `dags test`
    alone does not mark the tasks' outlet Assets active, so every task with an outlet
    would fail (apache/airflow#51644, open for 3.0.x)."""
    parsed = airflow_cli(env, "dags", "reserialize")
    if parsed.returncode != 0:
        raise RuntimeError(f"airflow dags reserialize failed: {parsed.stderr.strip()[-500:]}")
    args = ["dags", "test", dag_id, logical_date]
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    result = airflow_cli(env, *args)
    output = result.stdout + result.stderr
    states = dict(re.findall(r"task_id='(\w+)'.*?state=<TaskInstanceState\.\w+: '(\w+)'>", output))
    return DagTestRun("state=success, run_type=manual" in output, states, output)
