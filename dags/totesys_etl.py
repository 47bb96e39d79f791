"""totesys_etl: totesys -> S3 (CSV) -> S3 (parquet star schema) -> warehouse. Wiring only;
the logic is the `etl` package, the Airflow-specific helpers are in dags/totesys_airflow."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import Param, dag, task
from totesys_airflow import assets
from totesys_airflow.alerts import (
    error_kept_for_the_email,
    run_callbacks,
    task_defaults,
)
from totesys_airflow.config import DagConfig

if TYPE_CHECKING:
    from airflow.sdk.types import DagRunProtocol

    from etl.config import Settings

T = TypeVar("T")

CONFIG = DagConfig.from_env(os.environ)

# Plain words, few inline code spans: 3.0.6's UI breaks the lines around each one.
DOC = f"""
### totesys -> warehouse

Every run (schedule `{CONFIG.ingest_schedule}`):

1. **ingest** extracts the rows of the 11 totesys tables changed since the last batch into
   the bucket {CONFIG.ingestion_bucket} as CSV, then writes the batch manifest.
2. **wait_for_manifest** waits for that manifest without holding a worker (deferrable).
3. **transform** remodels every pending batch up to this one into the star schema as
   parquet in the bucket {CONFIG.processed_bucket}. A row that cannot become a warehouse
   row (an impossible date, an unknown currency) is set aside ({CONFIG.bad_row_policy}),
   and **report_set_aside** emails each such batch once; everything else flows on.
4. **load_due** lets **load** run when the run's interval ends on a multiple of
   {CONFIG.load_every_minutes} minutes, or when triggered with force_load. Load applies
   every processed batch not yet in the warehouse, each exactly once.
5. **freshness** fails when a source change has waited more than
   {CONFIG.freshness_threshold_minutes} minutes without reaching the warehouse.

**Alerts.** A failure that Airflow will not retry emails {", ".join(CONFIG.alert_emails)}
once, naming the task and the run: from the task itself, or, when the task was killed or
lost its heartbeat, from the failed run. A try that is retried sends nothing. A bad input
or configuration fails its task at once, without retries; an outage, or another process
holding the stage's lease, is retried with backoff.

A **backfill** run (or a finished past run cleared and re-run) re-reads its own data interval
plus the {CONFIG.overlap_seconds:.0f}s overlap before it as a batch of its own, never moving a
watermark, and loads it: the warehouse gains exactly the versions it lacked. The run whose
interval ends at {CONFIG.sweep_at} UTC is the **nightly sweep**: it also re-reads the last
{CONFIG.sweep_hours:g} hours and reports the versions the incremental path had missed
(`SweepMissedVersions`, and load's result). See docs/operations.md, "Backfill".

**Params for manual runs:** full_refresh (re-extract ignoring watermarks), tables (a
subset of the 11 tables), force_load.
"""


def _settings(tables: list[str] | None = None) -> Settings:
    from totesys_airflow.connections import pipeline_settings

    return pipeline_settings(CONFIG, tables)


def _injected(value: T | None, name: str) -> T:
    """A context value TaskFlow passes as a keyword argument. Its parameter defaults to None
    only so the DAG file can call the task without it; None at run time is a wiring bug."""
    if value is None:
        raise RuntimeError(f"Airflow did not pass the context value {name!r} to the task")
    return value


def _batch_time(dag_run: DagRunProtocol | None, data_interval_end: datetime | None) -> datetime:
    """The run's interval end; a manual run without a logical date has none, so its run_after."""
    if data_interval_end is not None:
        return data_interval_end
    return _injected(dag_run, "dag_run").run_after


@dag(
    dag_id="totesys_etl",
    schedule=CONFIG.ingest_schedule,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["totesys", "etl", "warehouse"],
    **run_callbacks(CONFIG),
    # "null" in each type: a param with a default is optional in the trigger form
    params={
        "full_refresh": Param(
            False,
            type=["boolean", "null"],
            description="Ignore the watermarks of the chosen tables",
        ),
        "tables": Param(
            [],
            type=["array", "null"],
            items={"type": "string"},
            description="Subset of tables; empty = all",
        ),
        "force_load": Param(
            False, type=["boolean", "null"], description="Load now even outside the load interval"
        ),
    },
    default_args=task_defaults(CONFIG),
)
def totesys_etl() -> None:
    @task(outlets=[assets.ingestion_batches(CONFIG)])
    def ingest(
        params: dict[str, Any] | None = None,
        dag_run: DagRunProtocol | None = None,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
    ) -> str:
        """Extract this run's batch; returns the manifest key the sensor waits for."""
        from totesys_airflow.connections import metrics_sink, s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input
        from totesys_airflow.intervals import clear_number, ingest_for_run, plan_run

        params = _injected(params, "params")
        # a manual full refresh or subset is new work: its own batch, never "already covered"
        full_refresh = bool(params["full_refresh"])  # null (cleared in the form) = default
        special = full_refresh or params["tables"]
        batch_ts = datetime.now(UTC) if special else _batch_time(dag_run, data_interval_end)
        run = _injected(dag_run, "dag_run")
        plan = plan_run(run.run_type, data_interval_start, _batch_time(run, data_interval_end),
                        CONFIG)  # fmt: skip
        with failing_fast_on_bad_input():
            result = ingest_for_run(
                _settings(params["tables"]),
                s3_client(CONFIG),
                metrics_sink(CONFIG),
                plan,
                clear_number(run),
                batch_ts,
                full_refresh,
                CONFIG,
            )
        return result.manifest_key

    # An XComArg: Airflow resolves it to ingest's return value when a consuming task runs,
    # and passing it in makes ingest upstream of the consumer. Airflow's typing cannot say
    # that a Task call returns its function's value later (see airflow.sdk.bases.decorator.Task).
    manifest_key = cast(str, ingest())

    wait_for_manifest = S3KeySensor(
        task_id="wait_for_manifest",
        bucket_name=CONFIG.ingestion_bucket,
        bucket_key=manifest_key,
        aws_conn_id="aws_default",
        deferrable=True,
        poke_interval=10,
        timeout=600,
    )

    @task(outlets=[assets.processed_batches(CONFIG)])
    def transform(manifest: str) -> list[str]:
        """Remodel pending batches up to this run's; returns the batch ids processed."""
        from totesys_airflow.connections import metrics_sink, s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input

        from etl.layout import batch_id_of_manifest
        from etl.ops.monitoring import monitored_transform

        with failing_fast_on_bad_input():
            results = monitored_transform(
                _settings(), s3_client(CONFIG), metrics_sink(CONFIG), batch_id_of_manifest(manifest)
            )
        return [result.batch_id for result in results]

    @task(max_active_tis_per_dag=1)
    def report_set_aside() -> list[str]:
        """Email each batch that set rows aside, once; returns the batch ids emailed. An
        SMTP outage is logged and left for the next run: it never holds the load back.
        One at a time across runs (a backfill's beside a scheduled one): two reporters
        that read the cursor together would both send before either moved it."""
        from airflow.sdk import get_current_context
        from totesys_airflow.connections import s3_client
        from totesys_airflow.rejects_email import email_set_aside_rows

        return email_set_aside_rows(CONFIG, s3_client(CONFIG), get_current_context())

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def load_due(
        params: dict[str, Any] | None = None,
        dag_run: DagRunProtocol | None = None,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
    ) -> bool:
        """True when the run's interval ends on a load boundary, with force_load, or for a
        backfill, a re-run or the sweep."""
        from totesys_airflow.intervals import clear_number, load_wanted, plan_run

        if _injected(params, "params")["force_load"]:
            return True
        end = _batch_time(dag_run, data_interval_end)
        run = _injected(dag_run, "dag_run")
        if load_wanted(plan_run(run.run_type, data_interval_start, end, CONFIG),
                       clear_number(run)):  # fmt: skip
            return True
        return (end.hour * 60 + end.minute) % CONFIG.load_every_minutes == 0

    # one XCom: a dict annotation would otherwise split it into one XCom per key
    @task(outlets=[assets.warehouse(CONFIG)], multiple_outputs=False, max_active_tis_per_dag=1)
    def load() -> dict[str, Any]:
        """Apply every processed batch not in the warehouse yet, each in one transaction;
        returns their ids and, when a sweep batch was among them, the versions it found that
        the incremental path had missed (also sent as the SweepMissedVersions metric).
        One at a time across runs: the lease serialises the loading anyway, and the email
        of rows set aside at load, sent after the lease is released, must not be sent by
        two runs' loads at once."""
        from airflow.sdk import get_current_context
        from totesys_airflow.connections import metrics_sink, s3_client
        from totesys_airflow.errors import failing_fast_on_bad_input
        from totesys_airflow.rejects_email import email_load_set_aside_rows

        from etl.ops.monitoring import monitored_load
        from etl.ops.sweep import report_sweep
        from etl.storage import ObjectStore

        context = get_current_context()
        with failing_fast_on_bad_input():
            s3, sink = s3_client(CONFIG), metrics_sink(CONFIG)
            # rows too large for this warehouse's columns: one email per batch, once, on
            # the load's own warehouse connection; the lag is measured by freshness, next
            loaded = monitored_load(
                _settings(),
                s3,
                sink,
                lambda conn: email_load_set_aside_rows(CONFIG, conn, context),
                measure_lag=False,
            )
            missed = report_sweep(ObjectStore(s3, CONFIG.ingestion_bucket), loaded, sink)
            return {"loaded": [r.batch_id for r in loaded], "sweep_missed_versions": missed}

    @task(trigger_rule="none_failed", retries=0)
    def freshness() -> str:
        """Fail (so the team is emailed) when a source change has waited too long."""
        from totesys_airflow.compat import AirflowFailException
        from totesys_airflow.connections import metrics_sink, s3_client

        from etl.ops.monitoring import monitored_freshness

        with error_kept_for_the_email():
            now = datetime.now(UTC).replace(tzinfo=None)
            result = monitored_freshness(
                _settings(),
                metrics_sink(CONFIG),
                now,
                CONFIG.freshness_threshold,
                s3_client(CONFIG),
            )
            if result.breached:
                raise AirflowFailException(result.describe())
        return result.describe()

    # transform reads the manifest key itself; the sensor only has to have seen it first
    transformed = transform(manifest_key)
    wait_for_manifest >> transformed
    loaded = load()
    transformed >> report_set_aside() >> load_due() >> loaded >> freshness()


totesys_etl()
