"""Each pipeline stage as its own process, so that "killed" is a real SIGKILL.

Three ways to run a stage:

- `run_cli`: the real command, `python -m etl ingest|transform|load`;
- `run_killed_at_random`: the real command, SIGKILLed a random moment after it has started
  working (its first TCP connection), wherever it happens to be;
- `run_paused`: this module as a child process (`python -m soak.stages <stage>`) that calls
  the same etl function with its public `on_step` hook. At each step the child prints
  `@step <name>` and waits; the controller may inject a fault there (SIGKILL the child, cut
  S3, restart PostgreSQL, terminate its connection, or SIGSTOP it while another process of
  the stage takes over, then SIGCONT it) before it lets the child go on. That gives precise
  points such as "after the data files, before the manifest".
- `run_concurrently`: the real command twice, the second started a random moment after
  the first began working: one waits for the other's lease.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from etl.config import Settings
from etl.errors import EtlError, exit_code, one_line
from etl.ingest.run import ingest
from etl.load.loader import load_pending
from etl.storage import s3_client_from_settings
from etl.transform.batch import transform_pending

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "transform", "load")
STEP_MARK = "@step "
GO, KILL, PAUSE = "go", "kill", "pause"
# how a stage that met another process of its stage may end: done, or "lease held / lost"
LEASE_EXIT = 75
STAGE_TIMEOUT = 180.0  # seconds; a stage taking longer is reported as hung


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    returncode: int  # negative: killed by that signal
    error: str  # the one-line error on stderr, if any
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def ok_or_lease(self) -> bool:
        """Succeeded, or stopped because another process held (or took) the lease."""
        return self.returncode in (0, LEASE_EXIT)

    def describe(self) -> str:
        if self.ok:
            return "ok"
        if self.killed:
            return "killed"
        return self.error or f"exit {self.returncode}"


class StageHung(RuntimeError):
    """A stage did not finish within STAGE_TIMEOUT: the soak stops there (exit 1), since
    a pipeline that hangs after a fault is a finding in itself."""


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return lines[-1] if lines else (stderr.strip().splitlines() or [""])[-1]


def _spawn(argv: list[str], env: Mapping[str, str], err: Path) -> subprocess.Popen[str]:
    with err.open("w") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def _finish(stage: str, process: subprocess.Popen[str], err: Path, started: float) -> StageOutcome:
    try:
        returncode = process.wait(STAGE_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise StageHung(f"{stage} did not finish within {STAGE_TIMEOUT:.0f}s") from None
    finally:
        stderr = err.read_text()
        err.unlink(missing_ok=True)
    return StageOutcome(stage, returncode, _error_line(stderr), time.perf_counter() - started)


def _stderr_file() -> Path:
    handle, name = tempfile.mkstemp(prefix="soak-stage-", suffix=".err")
    os.close(handle)
    return Path(name)


def run_cli(stage: str, env: Mapping[str, str]) -> StageOutcome:
    """`python -m etl <stage>`: exactly what an operator or a scheduler runs."""
    err, started = _stderr_file(), time.perf_counter()
    process = _spawn([sys.executable, "-m", "etl", stage], env, err)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    process.stdout.read()
    process.stdout.close()
    return _finish(stage, process, err, started)


def _wait_until_working(process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STAGE_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline and not _connected(process.pid):
        time.sleep(0.005)


def run_concurrently(
    stage: str, env: Mapping[str, str], rng: random.Random, within: float = 1.0
) -> tuple[StageOutcome, StageOutcome]:
    """`python -m etl <stage>` twice: the second starts `uniform(0, within)` seconds after
    the first opened its first TCP connection, as when a person runs the CLI while the
    DAG runs. Returns both outcomes, first started first."""
    err1, err2, started = _stderr_file(), _stderr_file(), time.perf_counter()
    argv = [sys.executable, "-m", "etl", stage]
    first = _spawn(argv, env, err1)
    drains = [threading.Thread(target=first.stdout.read, daemon=True)]  # type: ignore[union-attr]
    drains[0].start()
    assert first.stdin is not None
    first.stdin.close()
    _wait_until_working(first)
    time.sleep(rng.uniform(0, within))
    second_started = time.perf_counter()
    second = _spawn(argv, env, err2)
    assert second.stdin is not None and second.stdout is not None
    second.stdin.close()
    drains.append(threading.Thread(target=second.stdout.read, daemon=True))
    drains[1].start()
    try:
        outcomes = (
            _finish(stage, first, err1, started),
            _finish(stage, second, err2, second_started),
        )
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()
    for drain, process in zip(drains, (first, second), strict=True):
        drain.join(10)
        assert process.stdout is not None
        process.stdout.close()
    return outcomes


def run_killed_at_random(
    stage: str, env: Mapping[str, str], rng: random.Random, within: float = 0.25
) -> tuple[StageOutcome, bool]:
    """`python -m etl <stage>`, SIGKILLed `uniform(0, within)` seconds after its first TCP
    connection (so not while it is still importing). Returns (outcome, whether the kill
    landed before the process finished on its own)."""
    err, started = _stderr_file(), time.perf_counter()
    process = _spawn([sys.executable, "-m", "etl", stage], env, err)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    _wait_until_working(process)
    time.sleep(rng.uniform(0, within))
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    outcome = _finish(stage, process, err, started)
    drain.join(10)
    process.stdout.close()
    return outcome, outcome.killed  # a process that was exiting anyway was not killed


def _connected(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).net_connections(kind="tcp"))
    except psutil.Error:
        return False


StepAction = Callable[[str], str]  # step name -> GO, KILL or PAUSE


def run_paused(
    stage: str,
    env: Mapping[str, str],
    at_step: StepAction,
    while_stopped: Callable[[], None] = lambda: None,
) -> StageOutcome:
    """Run `stage` in a child that stops at every step; `at_step` decides (and may inject a
    fault) before the child goes on, or asks for it to be SIGKILLed there, or (PAUSE) for
    it to be SIGSTOPped while `while_stopped` runs and SIGCONTed after."""
    err, started = _stderr_file(), time.perf_counter()
    argv = [sys.executable, "-m", "soak.stages", stage]
    process = _spawn(argv, env, err)
    assert process.stdin is not None and process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while (line := _next_line(lines)) is not None:
            if not line.startswith(STEP_MARK):
                continue
            action = at_step(line.removeprefix(STEP_MARK))
            if action == KILL:
                process.send_signal(signal.SIGKILL)
                break
            if action == PAUSE:
                process.send_signal(signal.SIGSTOP)
                try:
                    while_stopped()
                finally:
                    process.send_signal(signal.SIGCONT)
            try:
                process.stdin.write(GO + "\n")
                process.stdin.flush()
            except BrokenPipeError:
                break
    except BaseException:
        process.kill()  # a failing controller leaves no child behind
        raise
    finally:
        try:
            outcome = _finish(stage, process, err, started)
        finally:
            reader.join(10)
            process.stdin.close()
            process.stdout.close()
    return outcome


def _next_line(lines: queue.Queue[str | None]) -> str | None:
    try:
        return lines.get(timeout=STAGE_TIMEOUT)
    except queue.Empty:
        return None  # _finish reports the hang


def _child(stage: str) -> int:
    """The child side of `run_paused`: the etl function with a hook that reports each step
    and waits; errors end as the CLI's do, one line on stderr and the CLI's exit code."""

    def hook(step: str) -> None:
        print(STEP_MARK + step, flush=True)
        if sys.stdin.readline().strip() != GO:
            os._exit(3)  # the controller went away: stop where we are

    try:
        settings = Settings.from_env(os.environ)
        s3 = s3_client_from_settings(settings)
        if stage == "ingest":
            ingest(settings, s3, on_step=hook)
        elif stage == "transform":
            transform_pending(settings, s3, on_step=hook)
        else:
            load_pending(settings, s3, on_step=hook)
    except EtlError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_code(error)
    except psycopg.Error as error:
        print(f"error: database: {one_line(error)}", file=sys.stderr)
        return exit_code(error)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python -m soak.stages {'|'.join(STAGES)}")
    sys.exit(_child(sys.argv[1]))
