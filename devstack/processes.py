"""Background service processes that outlive the command that started them.

`up` and `down` are separate commands, so services run detached in their own session and
are found again through the pids recorded in the stack's state file.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

# Children started by this process, kept so they can be reaped (and so Popen does not warn
# that a detached service is "still running" when the object is collected).
_children: dict[int, subprocess.Popen[bytes]] = {}


class ServiceStartError(RuntimeError):
    """A service did not come up; the message names it and points at its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def spawn(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start `argv` detached (own session, no stdin) with output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    _children[process.pid] = process
    return process.pid


def wait_for_port(
    name: str, host: str, port: int, pid: int, log_path: Path, timeout: float
) -> None:
    """Block until `host:port` accepts connections; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return
        if not is_alive(pid):
            raise ServiceStartError(f"{name} exited during start-up; see {log_path}")
        time.sleep(0.1)
    raise ServiceStartError(
        f"{name} did not listen on {host}:{port} within {timeout:.0f}s; see {log_path}"
    )


def is_alive(pid: int | None) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    if not pid:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def terminate(pid: int | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps the process when it is our child."""
    if not pid:
        return
    try:
        process = psutil.Process(pid)
        process.terminate()
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    except psutil.NoSuchProcess:
        pass
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 2.0) -> Any:
    """Poll `condition` until it returns something truthy, which is returned; TimeoutError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
