"""Failure emails under the real scheduler (`airflow standalone`, LocalExecutor), for the
failures a task cannot report itself: its process SIGKILLed, its heartbeat lost (its
supervisor SIGSTOPped), and its `execution_timeout` passed. Each failed run sends exactly
one email naming DAG, task and run; a try that Airflow retries sends none.

`ingest` is held mid-run by an ACCESS EXCLUSIVE lock on a totesys table, so it is running
for as long as a test needs."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.message import EmailMessage
from functools import partial
from typing import Any

import psutil
import psycopg
import pytest
import requests
from totesys_airflow.alerts import note_key

from devstack.airflow import Standalone, airflow_env, migrate, standalone_settings
from devstack.processes import free_port, wait_until
from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from simulator.seed import SeedPlan, seed_totesys
from tests.dags.test_real_scheduler import finished, runs

pytestmark = pytest.mark.slow

RETRIES = 1  # every test's task fails twice: the first try is retried, the second is final


@pytest.fixture(scope="module")
def airflow(
    airflow_stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Standalone]:
    seed_totesys(airflow_stack.totesys_db_url, SeedPlan(scale=0.01), replace=True)
    init_warehouse(Settings.from_env(airflow_stack.as_env()))
    home = tmp_path_factory.mktemp("standalone-alerts")
    env = airflow_env(airflow_stack, home, {
        **standalone_settings(free_port()),
        "AIRFLOW__TOTESYS__INGEST_SCHEDULE": "@once",  # one scheduled run; the tests trigger theirs
        "AIRFLOW__TOTESYS__RETRIES": str(RETRIES),
        "AIRFLOW__TOTESYS__RETRY_DELAY_SECONDS": "1",
        "AIRFLOW__TOTESYS__TASK_TIMEOUT_MINUTES": "1",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    })  # fmt: skip
    migrate(env)
    running = Standalone.start(env, home / "standalone.log")
    try:
        first = wait_until(lambda: runs(running), 120, "the scheduled run")[0]["dag_run_id"]
        assert wait_until(lambda: finished(running, first), 300, "the scheduled run") == "success"
        assert airflow_stack.messages() == [], "a healthy run sends no email"
        yield running
    finally:
        running.stop()


@contextmanager
def ingest_held(stack: StackEndpoints) -> Iterator[None]:
    """ingest blocks on its first read of `sales_order` until the block ends."""
    with psycopg.connect(stack.totesys_db_url) as conn:
        conn.execute("LOCK TABLE sales_order IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def trigger(airflow: Standalone) -> str:
    run = airflow.api("POST", "/dags/totesys_etl/dagRuns", json={"logical_date": None, "conf": {}})
    run_id: str = run["dag_run_id"]
    return run_id


def ingest(airflow: Standalone, run_id: str) -> dict[str, Any]:
    ti: dict[str, Any] = airflow.api(
        "GET", f"/dags/totesys_etl/dagRuns/{run_id}/taskInstances/ingest"
    )
    return ti


def task_process(airflow: Standalone, run_id: str, try_number: int) -> psutil.Process | None:
    """The try's task process once it executes the task (past parsing the DAG file: the
    run's alert note names this try); always a process of this Airflow."""
    ti = ingest(airflow, run_id)
    if ti["state"] != "running" or ti["try_number"] != try_number or not ti["pid"]:
        return None
    if note(airflow, run_id).get("try_number") != try_number:
        return None
    ours = psutil.Process(airflow.process.pid).children(recursive=True)
    found = [p for p in ours if p.pid == ti["pid"]]
    assert found, f"pid {ti['pid']} is not a process of this Airflow"
    return found[0]


def emails(stack: StackEndpoints, run_id: str) -> list[EmailMessage]:
    return [m for m in stack.messages() if f"(run {run_id}," in str(m["Subject"])]


def note(airflow: Standalone, run_id: str) -> dict[str, Any]:
    """The run's alert note (empty when there is none)."""
    try:
        variable = airflow.api("GET", f"/variables/{note_key('totesys_etl', run_id)}")
    except requests.HTTPError as error:
        if error.response.status_code == 404:
            return {}
        raise
    found: dict[str, Any] = json.loads(variable["value"])
    return found


def the_alerts(airflow: Standalone, stack: StackEndpoints, run_id: str) -> list[EmailMessage]:
    """Waits for the run to fail and its alert to be handled (the run-level callback, the
    last to run, deletes the run's note); returns every email naming the run."""
    assert wait_until(lambda: finished(airflow, run_id), 300, "the run to end") == "failed"

    def handled() -> list[EmailMessage] | None:
        sent = emails(stack, run_id)
        return sent if sent and not note(airflow, run_id) else None

    found: list[EmailMessage] = wait_until(handled, 180, "the failure email")
    return found


def body_of(message: EmailMessage) -> str:
    body: Any = message.get_body()
    return str(body.get_content())


def assert_one_email_naming(sent: list[EmailMessage], run_id: str, try_number: int) -> None:
    assert [str(m["Subject"]) for m in sent] == [
        f"[totesys] totesys_etl.ingest failed (run {run_id}, try {try_number})"
    ]
    body = body_of(sent[0])
    for field in ("<td>DAG</td><td>totesys_etl", "<td>Task</td><td>ingest",
                  f"<td>Run</td><td>{run_id}"):  # fmt: skip
        assert field in body, field


def test_a_task_process_killed_mid_run_sends_one_email(
    airflow: Standalone, airflow_stack: StackEndpoints
) -> None:
    with ingest_held(airflow_stack):
        run_id = trigger(airflow)
        process = wait_until(lambda: task_process(airflow, run_id, 1), 180, "ingest running")
        process.send_signal(signal.SIGKILL)  # as the out-of-memory killer does

        sent = the_alerts(airflow, airflow_stack, run_id)

    # Airflow 3.0.6 marks a task whose process was killed failed at once, without a retry
    assert ingest(airflow, run_id)["state"] == "failed"
    assert_one_email_naming(sent, run_id, try_number=1)
    assert "was killed" in body_of(sent[0])


def test_a_task_over_its_execution_timeout_sends_one_email_after_its_retry(
    airflow: Standalone, airflow_stack: StackEndpoints
) -> None:
    with ingest_held(airflow_stack):
        run_id = trigger(airflow)
        wait_until(lambda: task_process(airflow, run_id, 2), 240, "the retry of ingest")
        assert emails(airflow_stack, run_id) == [], "no email for a try that is retried"

        sent = the_alerts(airflow, airflow_stack, run_id)

    assert_one_email_naming(sent, run_id, try_number=2)
    assert "AirflowTaskTimeout" in body_of(sent[0])


def test_a_task_whose_heartbeat_is_lost_sends_one_email_after_its_retry(
    airflow: Standalone, airflow_stack: StackEndpoints
) -> None:
    stopped: list[psutil.Process] = []
    with ingest_held(airflow_stack):
        try:
            run_id = trigger(airflow)
            for try_number in range(1, RETRIES + 2):
                what = f"ingest try {try_number} running"
                process = wait_until(partial(task_process, airflow, run_id, try_number), 180, what)
                stopped.append(process)
                supervisor = process.parent()
                assert supervisor is not None
                supervisor.suspend()  # SIGSTOP: its heartbeats stop, the task runs on
                stopped.append(supervisor)
                if try_number == 1:
                    wait_until(lambda: task_process(airflow, run_id, 2), 180, "the retry")
                    assert emails(airflow_stack, run_id) == [], "no email for a retried try"

            sent = the_alerts(airflow, airflow_stack, run_id)
        finally:
            for process in stopped:  # task first: a resumed one would report its own failure
                with suppress(psutil.NoSuchProcess):
                    process.kill()

    assert_one_email_naming(sent, run_id, try_number=2)
    assert "heartbeats" in body_of(sent[0])
