"""`make airflow` as a new user runs it (`python -m devstack airflow` on an empty state
directory): its first run is green on its first try, the simulator keeps totesys changing,
nothing emails, and stopping it leaves nothing of Airflow or the simulator running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from devstack.processes import free_port, wait_until
from devstack.stack import LocalStack
from tests.conftest import REPO_ROOT
from tests.dags.tasks import ETL_TASKS

pytestmark = pytest.mark.slow


@dataclass
class Command:
    process: subprocess.Popen[bytes]
    output: Path
    url: str
    stack: LocalStack

    def printed(self) -> str:
        return self.output.read_text()


@pytest.fixture(scope="module")
def make_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Command]:
    state = tmp_path_factory.mktemp("make-airflow") / "stack"
    port = free_port()
    output = state.parent / "output.txt"
    env = {**os.environ, "AIRFLOW__API__PORT": str(port)}
    for name in [n for n in env if n.startswith("AIRFLOW__TOTESYS__")]:
        del env[name]  # the command's own defaults
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--state-dir", str(state), "airflow"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
        )  # fmt: skip
    command = Command(process, output, f"http://127.0.0.1:{port}", LocalStack(state))
    try:
        yield command
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        command.stack.down()


def started_by(command: Command) -> list[psutil.Process]:
    """Every process the command started, except the stack, which `make down` stops."""
    stack = json.loads(command.stack.state_file.read_text())
    kept = {stack["pg_pid"], stack["s3_pid"], stack["smtp_pid"]}
    ours = psutil.Process(command.process.pid).children(recursive=True)
    return [p for p in ours if p.pid not in kept and alive(p)]


def alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def cmdline(process: psutil.Process) -> list[str]:
    try:
        found: list[str] = process.cmdline()
    except psutil.Error:  # ended meanwhile
        return []
    return found


def test_first_run_green_on_first_try_no_email_and_ctrl_c_stops_everything(
    make_airflow: Command,
) -> None:
    line = wait_until(
        lambda: next((x for x in make_airflow.printed().splitlines() if "scheduled__" in x), None),
        300,
        "the first finished run",
    )
    run_id = line.split()[1].rstrip(":")
    token = requests.get(f"{make_airflow.url}/auth/token", timeout=10).json()["access_token"]
    tis = requests.get(
        f"{make_airflow.url}/api/v2/dags/totesys_etl/dagRuns/{run_id}/taskInstances",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["task_instances"]
    processes = started_by(make_airflow)
    simulating = [p for p in processes if "--follow" in cmdline(p)]
    endpoints = make_airflow.stack.running()
    assert endpoints is not None

    make_airflow.process.send_signal(signal.SIGINT)  # Ctrl-C
    make_airflow.process.wait(120)
    _, left = psutil.wait_procs(processes, timeout=30)
    left = [p for p in left if alive(p)]

    assert line.endswith(": success"), make_airflow.printed()
    assert {ti["task_id"]: ti["try_number"] for ti in tis} == {t: 1 for t in ETL_TASKS}
    assert len(simulating) == 1, "the real-time simulator runs"
    assert endpoints.messages() == [], "a healthy start sends no email"
    assert "Traceback" not in make_airflow.printed()
    assert left == [], [p.pid for p in left]
    assert make_airflow.stack.running() is not None, "the stack stays up for `make down`"
