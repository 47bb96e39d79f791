"""The listener plugin stands alone: MWAA's scheduler loads plugins.zip without the DAG
folder on its path, so the plugin must import nothing from it (`totesys_airflow`, `etl`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from etl.ops.metrics import read_local, summary
from tests.conftest import REPO_ROOT

RECORD = """
import sys
from datetime import UTC, datetime
sys.path.insert(0, sys.argv[1])
import totesys_task_metrics as plugin

class TaskInstance:
    dag_id, task_id, state = "totesys_etl", "load", "failed"
    start_date = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

plugin.on_task_instance_failed(None, TaskInstance(), None)
plugin.on_task_instance_success(None, TaskInstance())
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("etl", "totesys_airflow", "dags"))
print("LEAKED", leaked)
"""


def test_the_plugin_records_outcomes_without_the_dag_folder_on_its_path(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__TOTESYS__METRICS_SINK="local", AIRFLOW__TOTESYS__METRICS_FILE=str(path),
               AIRFLOW__TOTESYS__ENVIRONMENT="totesys-prod")  # fmt: skip
    # -I: neither the working directory nor PYTHONPATH on the path, only the plugins folder
    done = subprocess.run([sys.executable, "-I", "-c", RECORD, str(REPO_ROOT / "plugins")],
                          env=env, capture_output=True, text=True, cwd=tmp_path, check=True)  # fmt: skip

    assert "LEAKED []" in done.stdout, done.stdout + done.stderr
    records = read_local(path)
    assert [(r["name"], r["stage"], r["outcome"]) for r in records] == [
        ("TaskOutcome", "load", "failed"), ("TaskSeconds", "load", "failed"),
        ("TaskOutcome", "load", "success"), ("TaskSeconds", "load", "success"),
    ]  # fmt: skip
    assert {r["environment"] for r in records} == {"totesys-prod"}
    assert json.loads(path.read_text().splitlines()[0])["unit"] == "Count"
    # `python -m etl status` reads them as it reads the pipeline's own
    assert "  task tries in the last 24h: failed=1, success=1" in summary(
        records, datetime.now(UTC)
    )
