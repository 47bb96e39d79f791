"""Airflow wired to the local stack: the environment, the metadata DB, CLI runs, and
`airflow standalone` started so that its first run cannot fail on a half-started Airflow.

Connections come as AIRFLOW_CONN_* JSON (the same ids the DAG uses on MWAA), the DAG's own
settings as AIRFLOW__TOTESYS__*. The metadata DB is a database of the stack's PostgreSQL, as
on MWAA, one per Airflow home (`metadata_database`), with the LocalExecutor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests
from psycopg import sql

from devstack.postgres import HOST, SUPERUSER, database_url
from devstack.processes import wait_until
from devstack.stack import (
    REGION,
    TOTESYS_DATABASE,
    WAREHOUSE_DATABASE,
    StackEndpoints,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "totesys_etl"
# What the aws_default connection carries for moto, which accepts any keys. Airflow masks a
# connection's password in every log line, so it must be a string no log line contains by
# accident (the stack's own placeholder, "local", turned localhost into ***host).
MOTO_AIRFLOW_KEYS = ("moto-placeholder-key-id", "moto-placeholder-secret-Zq7")


def _postgres(endpoints: StackEndpoints, database: str) -> str:
    return json.dumps({
        "conn_type": "postgres", "host": HOST, "port": endpoints.pg_port, "login": SUPERUSER,
        "password": endpoints.pg_password, "schema": database,
    })  # fmt: skip


def metadata_database(home: Path) -> str:
    """The database of the stack's PostgreSQL holding the metadata of the Airflow whose home
    is `home`: one per home, so two Airflows on one stack (a test's `dags test` home and its
    standalone's) never share metadata. `make airflow`'s home, `.local/airflow`, gets
    `airflow`; a home named otherwise gets `airflow_<its name>`."""
    name = re.sub(r"[^a-z0-9_]", "_", home.resolve().name.lower())
    return (name if name.startswith("airflow") else f"airflow_{name}")[:63]


def metadata_url(endpoints: StackEndpoints, home: Path) -> str:
    """SQLAlchemy's URL of that database (psycopg2, the driver Airflow 3.0 and 3.3 both
    accept; the pipeline itself uses psycopg 3)."""
    url = database_url(endpoints.pg_password, endpoints.pg_port, metadata_database(home))
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def airflow_env(
    endpoints: StackEndpoints, home: Path, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """os.environ plus everything Airflow needs to run the DAG against this stack."""
    aws = {
        "conn_type": "aws",
        "login": MOTO_AIRFLOW_KEYS[0],
        "password": MOTO_AIRFLOW_KEYS[1],
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
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(endpoints, home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
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
    """Create the home's metadata database if it is missing, then `airflow db migrate`
    (which only checks the schema once it is at this Airflow's revision)."""
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", "", 1)
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
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


def standalone_settings(port: int) -> dict[str, str]:
    """`airflow standalone` sized for a laptop, with every new DAG paused until
    `Standalone.start` has seen the api-server answer (see there)."""
    workers = max(2, min(4, os.cpu_count() or 2))
    return {
        "AIRFLOW__API__PORT": str(port),
        # task runners reach the api-server's execution API here, not on the default :8080
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # local only: no login page
        "AIRFLOW__API__WORKERS": "1",
        # LocalExecutor keeps one idle process per slot; the DAG runs one task at a time
        "AIRFLOW__CORE__PARALLELISM": str(workers),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }


def rest_api(url: str, method: str, path: str, **kwargs: Any) -> Any:
    """Airflow's REST API (api/v2) at `url`, with a token from the simple auth manager;
    raises on an error status."""
    token = requests.get(f"{url}/auth/token", timeout=10).json()["access_token"]
    response = requests.request(method, f"{url}/api/v2{path}",
                                headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                **kwargs)  # fmt: skip
    response.raise_for_status()
    return response.json()


@dataclass
class Standalone:
    """A running `airflow standalone` (scheduler, dag-processor, triggerer, api-server)."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, env: Mapping[str, str], log_path: Path, timeout: float = 300) -> Standalone:
        """Start Airflow and unpause the DAG only once the api-server answers and the DAG
        is parsed. The scheduler starts as fast as the api-server; a run it queued earlier
        met a refusing execution API, and its first try failed. The DAG is paused first in
        case an earlier start left it unpaused."""
        env = dict(env)
        airflow_cli(env, "dags", "pause", DAG_ID)  # fails harmlessly on a new metadata DB
        airflow = str(Path(sys.executable).with_name("airflow"))
        with log_path.open("ab") as log:
            process = subprocess.Popen([airflow, "standalone"], env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                       start_new_session=True)  # fmt: skip
        running = cls(f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}", env, process)
        try:
            wait_until(running.dag_parsed, timeout, f"Airflow to start; see {log_path}")
            running.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        except BaseException:
            running.stop()
            raise
        return running

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return rest_api(self.url, method, path, **kwargs)

    def dag_parsed(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with status {self.process.returncode}")
        try:
            if requests.get(f"{self.url}/api/v2/version", timeout=5).status_code != 200:
                return False
            return any(d["dag_id"] == DAG_ID for d in self.api("GET", "/dags")["dags"])
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """SIGTERM to every Airflow process, SIGKILL to what is left after a minute.

        Waits for the whole tree, not only `airflow standalone`: the parent can exit while
        a task's supervisor or an api-server worker is still shutting down, and a process
        that outlives Ctrl-C keeps writing to the metadata DB and the stack."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        for child in children:  # one that started its own session is not in the group
            with contextlib.suppress(psutil.Error):
                child.terminate()
        deadline = time.monotonic() + 60
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        _, left = psutil.wait_procs(children, timeout=max(1.0, deadline - time.monotonic()))
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(left, timeout=10)
