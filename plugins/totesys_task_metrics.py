"""An Airflow plugin: every finished try of a totesys task becomes a metric.

A listener, not a callback, so the outcome is recorded whichever task fails and however:
Airflow calls it from the task runner when a task finishes, and from the scheduler when the
executor reports a task it lost. Outcomes: success, retry (failed, another try follows) and
failed (no try left). The metrics go where the DAG's settings say (`[totesys] metrics_sink`:
CloudWatch on MWAA, in `[totesys] metrics_namespace`; a JSON lines file locally), under the
names etl/ops/metrics.py documents (TaskOutcome, TaskSeconds), in the same record format.

Self-contained on purpose: MWAA's scheduler does not have the DAG folder on its path, so
nothing here imports from it (`totesys_airflow`, or `etl`, which travels inside the DAG
folder); it reads the `AIRFLOW__TOTESYS__*` variables MWAA sets and uses only Airflow and
its amazon provider. A listener must never break a task: anything that goes wrong here is
logged and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
DAG_PREFIX = "totesys_"  # the pipeline's DAGs: totesys_etl, totesys_reconcile
SETTING_PREFIX = "AIRFLOW__TOTESYS__"  # MWAA's form of the [totesys] options
DEFAULT_NAMESPACE = "Totesys/Pipeline"  # etl.ops.metrics.NAMESPACE, when none is set


def outcome_of(state: Any) -> str:
    """The try's outcome from the state Airflow set before calling the listener."""
    return "retry" if str(getattr(state, "value", state)) == "up_for_retry" else "failed"


def _setting(name: str, default: str) -> str:
    return os.environ.get(SETTING_PREFIX + name.upper(), "").strip() or default


def task_metrics(task_id: str, outcome: str, seconds: float | None) -> list[tuple[str, float, str]]:
    """(name, value, unit) of one finished try: as etl.ops.metrics.task_outcome records it."""
    metrics = [("TaskOutcome", 1.0, "Count")]
    if seconds is not None:
        metrics.append(("TaskSeconds", round(seconds, 3), "Seconds"))
    return metrics


def send(task_id: str, outcome: str, seconds: float | None, now: datetime) -> None:
    sink = _setting("metrics_sink", "none")
    environment = _setting("environment", "local")
    metrics = task_metrics(task_id, outcome, seconds)
    if sink == "local":
        path = Path(_setting("metrics_file", ""))
        records = [{"at": now.isoformat(), "environment": environment, "name": name,
                    "value": value, "unit": unit, "stage": task_id, "table": None,
                    "outcome": outcome} for name, value, unit in metrics]  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write("".join(json.dumps(record) + "\n" for record in records))
    elif sink == "cloudwatch":
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        dimensions = [{"Name": "Environment", "Value": environment},
                      {"Name": "Stage", "Value": task_id}, {"Name": "Outcome", "Value": outcome}]  # fmt: skip
        client = AwsBaseHook(aws_conn_id="aws_default", client_type="cloudwatch").get_conn()
        client.put_metric_data(
            Namespace=_setting("metrics_namespace", DEFAULT_NAMESPACE),
            MetricData=[{"MetricName": name, "Dimensions": dimensions, "Timestamp": now,
                         "Value": value, "Unit": unit} for name, value, unit in metrics],
        )  # fmt: skip


def _record(task_instance: Any, outcome: str) -> None:
    if not str(getattr(task_instance, "dag_id", "")).startswith(DAG_PREFIX):
        return
    try:
        now = datetime.now(UTC)
        started = getattr(task_instance, "start_date", None)
        seconds = (now - started).total_seconds() if started else None
        send(str(task_instance.task_id), outcome, seconds, now)
    except Exception:
        log.warning("totesys task outcome not recorded", exc_info=True)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _record(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _record(task_instance, outcome_of(getattr(task_instance, "state", None)))


class TotesysTaskMetrics(AirflowPlugin):
    name = "totesys_task_metrics"
    listeners = [sys.modules[__name__]]  # noqa: RUF012 (the base class declares it a list)
