"""An Airflow plugin: every finished try of a totesys task becomes a metric.

A listener, not a callback, so the outcome is recorded whichever task fails and however:
Airflow calls it from the task runner when a task finishes, and from the scheduler when the
executor reports a task it lost. Outcomes: success, retry (failed, another try follows) and
failed (no try left). The metrics go where the DAG's settings say (`[totesys] metrics_sink`:
CloudWatch on MWAA, a JSON lines file locally); see etl/metrics.py for their names.

Only this module is imported at plugin load (by the scheduler and the api-server too); the
pipeline's packages travel with the DAG folder and are imported when a task finishes. A
listener must never break a task: anything that goes wrong here is logged and dropped.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
DAG_PREFIX = "totesys_"  # the pipeline's DAGs: totesys_etl, totesys_reconcile


def outcome_of(state: Any) -> str:
    """The try's outcome from the state Airflow set before calling the listener."""
    return "retry" if str(getattr(state, "value", state)) == "up_for_retry" else "failed"


def _record(task_instance: Any, outcome: str) -> None:
    if not str(getattr(task_instance, "dag_id", "")).startswith(DAG_PREFIX):
        return
    try:
        from totesys_airflow.config import DagConfig
        from totesys_airflow.connections import metrics_sink

        from etl.metrics import task_outcome

        started = getattr(task_instance, "start_date", None)
        seconds = (datetime.now(UTC) - started).total_seconds() if started else None
        sink = metrics_sink(DagConfig.from_env(os.environ))
        sink.send(task_outcome(str(task_instance.task_id), outcome, seconds))
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
