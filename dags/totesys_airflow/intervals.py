"""How a run of totesys_etl reads the source: incrementally, as a backfill of its own data
interval, or as the nightly sweep.

- **incremental** (scheduled and manual runs, as always): the changes since the bookmarks.
- **backfill** (`DagRun.run_type == "backfill"`, or a finished past run cleared and re-run,
  which ingest recognises because a later batch already covers its interval): a window
  batch over the run's data interval plus the overlap before it (etl.ingest.window).
- **sweep** (the run whose interval ends at `sweep_at` UTC, 02:00 by default): its
  incremental batch, then a window batch over the `sweep_hours` (26) before the interval's end,
  so a change committed later than the overlap reaches the warehouse within a day.

The DAG keeps Airflow 3's default cron timetable (`CronTriggerTimetable`), whose runs have a
zero-length data interval. The interval a backfill re-reads is derived from the schedule
instead: it ends at the run's `data_interval_end` and starts at the cron fire before it (what
`CronDataIntervalTimetable` would have given). A timetable with real intervals is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from etl.config import Settings
from etl.ingest.run import IngestResult
from etl.ingest.window import Window, interval_window, sweep_window
from etl.layout import manifest_key
from etl.ops.metrics import MetricsSink
from etl.ops.monitoring import monitored_ingest
from totesys_airflow.config import DagConfig

Mode = Literal["incremental", "backfill", "sweep"]


@dataclass(frozen=True)
class RunPlan:
    mode: Mode
    start: datetime  # the data interval, derived from the schedule when Airflow's is empty
    end: datetime

    def window(self, settings: Settings, config: DagConfig) -> Window:
        """The window batch this run adds (backfill: its interval; sweep: the last day)."""
        if self.mode == "sweep":
            return sweep_window(self.end, config.sweep_hours, settings.source_zone)
        return interval_window(self.start, self.end, settings.overlap, settings.source_zone)


def data_interval(
    schedule: str, start: datetime | None, end: datetime
) -> tuple[datetime, datetime]:
    """`[start, end)`: Airflow's when it has a length, else from the previous cron fire."""
    if start is not None and start < end:
        return start, end
    import pendulum
    from airflow.timetables.interval import CronDataIntervalTimetable

    try:
        inferred = CronDataIntervalTimetable(schedule, "UTC").infer_manual_data_interval(
            run_after=pendulum.instance(end.astimezone(UTC))
        )
    except Exception:  # not a cron expression (@once, a timedelta): no interval to derive
        return end, end
    if inferred.end == end:  # a cron fire time: the interval since the fire before it
        return inferred.start, end
    return inferred.end, end  # between fires (a manual run): since the last fire


def is_sweep_end(end: datetime, sweep_at: str) -> bool:
    """Whether an interval ending at `end` is the nightly sweep's (`sweep_at` is HH:MM UTC)."""
    return end.astimezone(UTC).strftime("%H:%M") == sweep_at


def plan_run(run_type: str, start: datetime | None, end: datetime, config: DagConfig) -> RunPlan:
    """The run's mode from its type and interval (a cleared past run is found by ingest)."""
    begin, end = data_interval(config.ingest_schedule, start, end)
    if run_type == "backfill":
        return RunPlan("backfill", begin, end)
    if is_sweep_end(end, config.sweep_at):
        return RunPlan("sweep", begin, end)
    return RunPlan("incremental", begin, end)


def clear_number(dag_run: object) -> int:
    """How many times the run was cleared: the task's DagRun (the Task SDK's model) has it,
    though Airflow's DagRunProtocol type does not declare it."""
    return int(getattr(dag_run, "clear_number", 0) or 0)


def cleared_past_run(result: IngestResult, clear_number: int) -> bool:
    """A run cleared after it finished (`clear_number` > 0) whose own batch id is covered by a
    later batch: ingest returned the covering batch's manifest, not its own. A scheduled run
    that merely waited behind a backfill's batch is covered too, but was never cleared; the
    next run's incremental batch picks its changes up, as before."""
    return clear_number > 0 and result.manifest_key != manifest_key(result.batch_id)


def ingest_for_run(
    settings: Settings,
    s3: Any,
    sink: MetricsSink,
    plan: RunPlan,
    clear_number: int,
    batch_ts: datetime,
    full_refresh: bool,
    config: DagConfig,
) -> IngestResult:
    """This run's batch (or batches) by its plan; returns the one the sensor waits for."""
    if plan.mode == "backfill" and not full_refresh:
        window = plan.window(settings, config)
        return monitored_ingest(settings, s3, sink, datetime.now(UTC), window=window)
    result = monitored_ingest(settings, s3, sink, batch_ts, full_refresh)
    if full_refresh:
        return result
    if plan.mode == "sweep" or cleared_past_run(result, clear_number):
        mode: Mode = "sweep" if plan.mode == "sweep" else "backfill"
        window = RunPlan(mode, plan.start, plan.end).window(settings, config)
        return monitored_ingest(settings, s3, sink, datetime.now(UTC), window=window)
    return result


def load_wanted(plan: RunPlan, clear_number: int) -> bool:
    """Backfills, re-runs and the sweep carry their batch to the warehouse whatever the
    load cadence: the point of running them is the warehouse."""
    return plan.mode != "incremental" or clear_number > 0
