"""totesys_etl: totesys -> S3 (CSV) -> S3 (parquet star schema) -> warehouse. Wiring only;
the logic is the `etl` package, the Airflow-specific helpers are in dags/totesys_airflow."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import Param, dag, get_current_context, task
from totesys_airflow.alerts import error_kept_for_the_email, failure_email
from totesys_airflow.config import DagConfig

CONFIG = DagConfig.from_env(os.environ)

DOC = f"""
### totesys -> warehouse

Every run (schedule `{CONFIG.ingest_schedule}`):

1. **ingest** extracts the rows of the 11 totesys tables changed since the last batch into
   `s3://{CONFIG.ingestion_bucket}` as CSV, then writes the batch manifest.
2. **wait_for_manifest** (deferrable `S3KeySensor`) waits for that manifest.
3. **transform** remodels every pending batch up to this one into the star schema as
   parquet in `s3://{CONFIG.processed_bucket}`.
4. **load_due** lets **load** run when the run's interval ends on a multiple of
   {CONFIG.load_every_minutes} minutes (or when triggered with `force_load`); load
   applies every processed batch not yet in the warehouse, each exactly once.
5. **freshness** fails (and emails) when a source change has waited more than
   {CONFIG.freshness_threshold_minutes} minutes without reaching the warehouse.

Any failure emails {", ".join(CONFIG.alert_emails)}. A bad input or configuration (etl's
terminal errors) fails its task at once, without retries; an outage, or another process
holding the stage's lease, is retried with backoff. Re-running or backfilling any interval
is safe: a past interval is already covered by a later batch and changes nothing.

Params for manual runs: `full_refresh` (re-extract ignoring watermarks), `tables` (a subset
of the 11 tables), `force_load`.
"""


def _settings(tables: list[str] | None = None):  # type: ignore[no-untyped-def]
    from totesys_airflow.connections import pipeline_settings

    return pipeline_settings(CONFIG, tables)


def _batch_time(context) -> datetime:  # type: ignore[no-untyped-def]
    """The run's interval end; a manual run without a logical date has none, so its run_after."""
    end = context.get("data_interval_end")
    return end if end is not None else context["dag_run"].run_after


@dag(
    dag_id="totesys_etl",
    schedule=CONFIG.ingest_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["totesys", "etl", "warehouse"],
    params={
        "full_refresh": Param(
            False, type="boolean", description="Ignore the watermarks of the chosen tables"
        ),
        "tables": Param(
            [], type="array", items={"type": "string"}, description="Subset of tables; empty = all"
        ),
        "force_load": Param(
            False, type="boolean", description="Load now even outside the load interval"
        ),
    },
    default_args={
        "retries": CONFIG.retries,
        "retry_delay": timedelta(seconds=CONFIG.retry_delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=CONFIG.task_timeout_minutes),
        "on_failure_callback": failure_email(CONFIG),
    },
)
def totesys_etl() -> None:
    @task
    def ingest() -> str:
        """Extract this run's batch; returns the manifest key the sensor waits for."""
        from totesys_airflow.connections import s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input

        from etl.ingest import ingest as run_ingest

        context = get_current_context()
        params = context["params"]
        # a manual full refresh or subset is new work: its own batch, never "already covered"
        special = params["full_refresh"] or params["tables"]
        batch_ts = datetime.now(UTC) if special else _batch_time(context)
        with failing_fast_on_bad_input():
            result = run_ingest(
                _settings(params["tables"]), s3_client(), batch_ts, params["full_refresh"]
            )
        return result.manifest_key

    manifest_key = ingest()

    wait_for_manifest = S3KeySensor(
        task_id="wait_for_manifest",
        bucket_name=CONFIG.ingestion_bucket,
        bucket_key="{{ ti.xcom_pull(task_ids='ingest') }}",
        aws_conn_id="aws_default",
        deferrable=True,
        poke_interval=10,
        timeout=600,
    )

    @task
    def transform(manifest: str) -> list[str]:
        """Remodel pending batches up to this run's; returns the batch ids processed."""
        from totesys_airflow.connections import s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input

        from etl.layout import batch_id_of_manifest
        from etl.transform.batch import transform_pending

        with failing_fast_on_bad_input():
            results = transform_pending(
                _settings(), s3_client(), up_to=batch_id_of_manifest(manifest)
            )
        return [result.batch_id for result in results]

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def load_due() -> bool:
        """True when the run's interval ends on a load boundary, or with force_load."""
        context = get_current_context()
        if context["params"]["force_load"]:
            return True
        end = _batch_time(context)
        return (end.hour * 60 + end.minute) % CONFIG.load_every_minutes == 0

    @task
    def load() -> list[str]:
        """Apply every processed batch not in the warehouse yet, each in one transaction."""
        from totesys_airflow.connections import s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input

        from etl.load.loader import load_pending

        with failing_fast_on_bad_input():
            return [result.batch_id for result in load_pending(_settings(), s3_client())]

    @task(trigger_rule="none_failed", retries=0)
    def freshness() -> str:
        """Fail (so the team is emailed) when a source change has waited too long."""
        from airflow.exceptions import AirflowFailException

        from etl.freshness import check

        with error_kept_for_the_email():
            result = check(
                _settings(), datetime.now(UTC).replace(tzinfo=None), CONFIG.freshness_threshold
            )
            if result.breached:
                raise AirflowFailException(f"freshness breach: {result.describe()}")
        return result.describe()

    transformed = transform(manifest_key)
    wait_for_manifest >> transformed
    manifest_key >> wait_for_manifest
    loaded = load()
    transformed >> load_due() >> loaded >> freshness()


totesys_etl()
