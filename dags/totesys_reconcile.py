"""totesys_reconcile: once a day, does the warehouse still agree with totesys? Wiring only;
the comparison is `etl.ops.reconcile` (also `python -m etl reconcile`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from airflow.sdk import dag, task
from totesys_airflow.alerts import run_callbacks, task_defaults
from totesys_airflow.config import DagConfig

CONFIG = DagConfig.from_env(os.environ)

DOC = f"""
### Reconcile the warehouse with totesys

On schedule `{CONFIG.reconcile_schedule}` (UTC), **reconcile** compares the warehouse with
the source as of the last loaded batch: each dimension row by row, each fact by its distinct
ids and newest version per id, and the calendar. A difference fails the task at once (no
retries: running it again finds the same) and emails {", ".join(CONFIG.alert_emails)}
with the tables and a few ids; docs/operations.md says what to do.
"""


@dag(
    dag_id="totesys_reconcile",
    schedule=CONFIG.reconcile_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["totesys", "monitoring"],
    # the same alerting as totesys_etl: one email per failure, whoever notices it
    **run_callbacks(CONFIG),
    default_args=task_defaults(CONFIG),  # outages retry; a difference fails at once (below)
)
def totesys_reconcile() -> None:
    @task
    def reconcile() -> str:
        """One line per warehouse table; fails naming every table that differs."""
        from totesys_airflow.compat import AirflowFailException
        from totesys_airflow.connections import metrics_sink, pipeline_settings, s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input

        from etl.ops.metrics import reconcile_differences
        from etl.ops.reconcile import reconcile as compare
        from etl.storage import ObjectStore

        with failing_fast_on_bad_input():
            s3 = s3_client(CONFIG)
            result = compare(
                pipeline_settings(CONFIG),
                ObjectStore(s3, CONFIG.ingestion_bucket),
                ObjectStore(s3, CONFIG.processed_bucket),
            )
            metrics_sink(CONFIG).send([reconcile_differences(len(result.differing))])
            if not result.ok:
                differing = [check.describe() for check in result.checks if not check.ok]
                raise AirflowFailException(
                    "the warehouse differs from the source: " + " | ".join(differing)
                )
        return "\n".join(check.describe() for check in result.checks)

    reconcile()


totesys_reconcile()
