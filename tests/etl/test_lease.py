"""The stage lease against the real PostgreSQL: one holder, a bounded wait that names the
holder and writes nothing, a killed holder frees it, a paused holder is fenced."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from etl.errors import EXIT_LEASE, LeaseBusyError
from etl.ingest.run import ingest
from etl.lease import LeaseTerms, hold
from etl.storage import ObjectStore
from tests.conftest import REPO_ROOT
from tests.etl.test_main import env_for, run_etl


@contextmanager
def holder(env: dict[str, str], stage: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Another process holding `stage`'s lease: (process, its generation)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.etl.lease_holder", stage],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert line.startswith("held "), line
        yield process, int(line.split()[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Let a holder go on to its commit check: (exit code, what it printed)."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    out = process.stdout.read()
    return process.wait(60), out


def everything(s3: Any, settings: Settings) -> list[str]:
    return [
        key
        for bucket in (settings.ingestion_bucket, settings.processed_bucket)
        for key in ObjectStore(s3, bucket).keys("")
    ]


def test_a_second_ingest_waits_then_exits_75_naming_the_holder_having_written_nothing(
    stack: StackEndpoints, settings: Settings, s3: Any
) -> None:
    env = {**env_for(stack, settings), "LEASE_WAIT_SECONDS": "1"}
    with holder(env, "ingest") as (process, generation):
        second = run_etl(env, "ingest")
        objects = everything(s3, settings)
        code, out = finish(process)

    assert second.returncode == EXIT_LEASE, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: the ingest lease is held by host "), lines[0]
    assert f" pid {process.pid} since " in lines[0]
    assert f"(generation {generation})" in lines[0]
    assert lines[0].endswith("gave up after 1s, nothing written")
    assert objects == [], "the waiting ingest wrote nothing"
    assert (code, out.strip()) == (0, "still held")
    after = run_etl(env, "ingest")
    assert after.returncode == 0, after.stderr


def test_other_stages_are_not_blocked_by_the_ingest_lease(
    stack: StackEndpoints, settings: Settings
) -> None:
    env = {**env_for(stack, settings), "LEASE_WAIT_SECONDS": "0"}
    with holder(env, "ingest") as (process, _):
        transform = run_etl(env, "transform")
        finish(process)

    assert transform.returncode == 0, transform.stderr
    assert "no ingestion batch waiting" in transform.stdout


def test_a_killed_holder_frees_the_lease_without_anyone_acting(
    stack: StackEndpoints, settings: Settings
) -> None:
    env = env_for(stack, settings)
    with holder(env, "transform") as (process, generation):
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        with hold(
            LeaseTerms.of(replace(settings, lease_wait=timedelta(seconds=60))), "transform"
        ) as lease:
            taken = lease.generation

    assert taken == generation + 1


def test_a_paused_holder_that_resumes_after_a_takeover_cannot_commit(
    stack: StackEndpoints, settings: Settings
) -> None:
    env = {**env_for(stack, settings), "LEASE_TIMEOUT_SECONDS": "2"}
    with holder(env, "ingest") as (process, generation):
        os.kill(process.pid, signal.SIGSTOP)
        try:
            successor = replace(settings, lease_wait=timedelta(seconds=120))
            with hold(LeaseTerms.of(successor), "ingest") as lease:
                taken = lease.generation
                os.kill(process.pid, signal.SIGCONT)
                code, out = finish(process)
                lease.check("the successor's commit")  # still ours
        finally:
            with contextlib.suppress(ProcessLookupError):  # never leave it stopped
                os.kill(process.pid, signal.SIGCONT)

    assert taken == generation + 1
    assert code == EXIT_LEASE, out
    assert f"the ingest lease (generation {generation}) was lost before the test's commit" in out
    assert "idle-session timeout" in out, "the server ended the stopped holder's session"


def test_ingest_in_process_gives_up_with_lease_busy_and_writes_nothing(
    stack: StackEndpoints, settings: Settings, s3: Any
) -> None:
    env = env_for(stack, settings)
    with holder(env, "ingest") as (process, _):
        with pytest.raises(LeaseBusyError, match=r"^the ingest lease is held by host "):
            ingest(replace(settings, lease_wait=timedelta(0)), s3)
        objects = everything(s3, settings)
        finish(process)

    assert objects == []


def test_lease_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({"LEASE_WAIT_SECONDS": "5", "LEASE_TIMEOUT_SECONDS": "7.5"})
    assert settings.lease_wait == timedelta(seconds=5)
    assert settings.lease_timeout == timedelta(seconds=7.5)
    assert Settings.from_env({}).lease_wait == timedelta(seconds=60)
