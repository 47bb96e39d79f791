"""The README's main command runs end to end and leaves nothing running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devstack.processes import is_alive
from tests.conftest import REPO_ROOT


def test_demo_without_airflow_runs_every_stage_and_stops_the_stack(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.demo",
            "--scale",
            "0.02",
            "--state-dir",
            str(state),
            "--without-airflow",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "totesys seeded at scale 0.02" in out
    assert "sales_order" in out and "224" in out  # 11,175 x 0.02
    assert out.count("manifest s3://totesys-ingestion/_manifests/") == 3
    assert "0 rows" in out and "(no changes)" in out
    assert out.count("transform -> s3://totesys-processed:") == 3
    assert "fact_payment=" in out and "dim_date=" in out
    assert out.count("load -> warehouse") == 3
    assert "warehouse now:" in out and "behind source by 0:00:00" in out
    assert "reconcile (python -m etl reconcile):" in out and out.count(": ok (") == 11
    assert out.rstrip().endswith("local stack stopped; nothing left running")
    pids = json.loads((state / "stack.json").read_text())
    assert not any(is_alive(pids[name]) for name in ("pg_pid", "s3_pid", "smtp_pid"))


def test_demo_runs_the_dag_twice_and_finds_the_change(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--scale", "0.02", "--state-dir", str(state)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert out.count("airflow dags test totesys_etl") == 2
    assert out.count(": success in ") == 2
    assert "freshness=success" in out
    found = out.split("changed rows found in the warehouse: ")[1].splitlines()[0]
    assert "'1 Demo Quay'" in found and "dim_counterparty on it: [" in found
    counterparties = found.split("dim_counterparty on it: ")[1]
    assert counterparties.count(",") >= 1, "at least two counterparties followed the address edit"
    assert "behind source by 0:00:00" in out
    pids = json.loads((state / "stack.json").read_text())
    assert not any(is_alive(pids[name]) for name in ("pg_pid", "s3_pid", "smtp_pid"))
