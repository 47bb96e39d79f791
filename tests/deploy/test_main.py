"""`python -m deploy` is the deployment's entry point; the local stack is `python -m devstack`."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_mwaa_help_lists_the_commands() -> None:
    result = _run("mwaa", "--help")
    assert result.returncode == 0
    assert (
        "{apply,status,trigger,backfill,unpause}" in result.stdout and "--dry-run" in result.stdout
    )


def test_mwaa_without_an_environment_name_is_one_clear_line() -> None:
    result = _run("mwaa", "--dry-run")
    assert result.returncode == 1
    assert result.stderr == "error: set --env-name or MWAA_ENV_NAME\n"


def test_an_unknown_target_prints_usage() -> None:
    result = _run("elsewhere")
    assert result.returncode == 2 and "usage: python -m deploy mwaa" in result.stderr
