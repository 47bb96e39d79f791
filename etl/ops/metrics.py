"""Pipeline metrics: what each stage did, recorded where someone outside Airflow can see it.

One small interface, `MetricsSink.send`, and two sinks: Amazon CloudWatch (`PutMetricData`
under one namespace, dimensions Environment, Stage and Table; what MWAA uses) and JSON lines
in a local file (the local stack; summarised by `python -m etl status`). Recording a metric
never fails the pipeline: a sink that cannot write logs one warning and drops the batch, so
a CloudWatch outage costs a gap in a graph, not a failed load.

Names (all under `Totesys/Pipeline`, or the namespace the settings name: on MWAA the
deployer gives each environment its own, `Totesys/Pipeline/<prefix>-<env>`; see
docs/operations.md for what to do when they move):

| metric | unit | dimensions | meaning |
| --- | --- | --- | --- |
| RowsExtracted, BytesExtracted | Count, Bytes | Stage=ingest, Table | one batch's extract per source table |
| RowsTransformed, BytesTransformed | Count, Bytes | Stage=transform, Table | parquet written per warehouse table |
| RowsLoaded | Count | Stage=load, Table | rows inserted or updated per warehouse table |
| StageSeconds | Seconds | Stage | how long the stage ran |
| BatchesPending | Count | Stage=transform or load | batches waiting for that stage after it ran |
| LoadSucceeded | Count | Stage=load | 1 per load run that applied a batch: the dead-man's switch |
| WarehouseLagSeconds | Seconds | Stage=freshness | the wait of the oldest source change not yet loaded (0: none) |
| ReconcileDifferences | Count | Stage=reconcile | warehouse tables that disagree with the source (0) |
| SweepMissedVersions | Count | Stage=sweep | versions the nightly sweep found the incremental path had missed (0) |
| TaskOutcome, TaskSeconds | Count, Seconds | Stage=<task id>, Outcome | one per finished Airflow task try (plugins/) |
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from etl.config import check_metrics_sink

logger = logging.getLogger("etl.ops.metrics")

NAMESPACE = "Totesys/Pipeline"
PUT_BATCH = 20  # metrics per PutMetricData call: the long-standing limit, safe everywhere


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str  # a CloudWatch StandardUnit: Count, Bytes, Seconds
    stage: str
    table: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # further dimensions, e.g. (("Outcome", "failed"),)
    at: datetime | None = None  # None: stamped by the sink, one time for all it sends at once

    def dimensions(self, environment: str) -> list[dict[str, str]]:
        pairs = [("Environment", environment), ("Stage", self.stage)]
        if self.table:
            pairs.append(("Table", self.table))
        return [{"Name": name, "Value": value} for name, value in (*pairs, *self.extra)]

    def stamped(self, at: datetime) -> Metric:
        return self if self.at is not None else replace(self, at=at)

    def to_json(self, environment: str) -> dict[str, Any]:
        assert self.at is not None
        return {
            "at": self.at.isoformat(),
            "environment": environment,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "stage": self.stage,
            "table": self.table,
            **{name.lower(): value for name, value in self.extra},
        }


class MetricsSink(Protocol):
    def send(self, metrics: Sequence[Metric]) -> None: ...


class NoMetrics:
    """Metrics switched off (the default for a bare CLI call)."""

    def send(self, metrics: Sequence[Metric]) -> None:
        return None


def _chunks(items: Sequence[Metric], size: int) -> Iterator[Sequence[Metric]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class CloudWatchMetrics:
    """PutMetricData in batches; an error from CloudWatch is logged, never raised."""

    cloudwatch: Any  # a boto3 CloudWatch client
    environment: str
    namespace: str = NAMESPACE

    def send(self, metrics: Sequence[Metric]) -> None:
        now = datetime.now(UTC)
        for chunk in _chunks([m.stamped(now) for m in metrics], PUT_BATCH):
            data = [
                {
                    "MetricName": m.name,
                    "Dimensions": m.dimensions(self.environment),
                    "Timestamp": m.at,
                    "Value": float(m.value),
                    "Unit": m.unit,
                }
                for m in chunk
            ]
            try:
                self.cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=data)
            except Exception as error:  # botocore's errors and any transport failure alike
                logger.warning(
                    "metrics not sent to CloudWatch (%d dropped): %s",
                    len(chunk),
                    type(error).__name__,
                )


@dataclass
class JsonLinesMetrics:
    """One JSON object per metric appended to a local file (the local stack's directory)."""

    path: Path
    environment: str

    def send(self, metrics: Sequence[Metric]) -> None:
        now = datetime.now(UTC)
        lines = "".join(
            json.dumps(m.stamped(now).to_json(self.environment)) + "\n" for m in metrics
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(lines)
        except OSError as error:
            logger.warning("metrics not written to %s: %s", self.path, error.strerror)


def read_local(path: Path) -> list[dict[str, Any]]:
    """What a JsonLinesMetrics sink wrote; a torn last line (a killed writer) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# --- what each stage records -------------------------------------------------------------


def table_metrics(
    stage: str, rows_name: str, bytes_name: str | None, tables: Mapping[str, Mapping[str, Any]]
) -> list[Metric]:
    """Per-table rows (and bytes) from a manifest's `tables` entries."""
    out = []
    for table, entry in sorted(tables.items()):
        out.append(Metric(rows_name, float(entry.get("rows", 0)), "Count", stage, table))
        if bytes_name is not None:
            out.append(Metric(bytes_name, float(entry.get("bytes", 0) or 0), "Bytes", stage, table))
    return out


def stage_seconds(stage: str, seconds: float) -> Metric:
    return Metric("StageSeconds", round(seconds, 3), "Seconds", stage)


def pending(stage: str, batches: int) -> Metric:
    return Metric("BatchesPending", float(batches), "Count", stage)


def loaded_rows(tables: Iterable[Mapping[str, Mapping[str, int]]]) -> list[Metric]:
    """RowsLoaded per warehouse table over the batches of one load run, and the heartbeat,
    LoadSucceeded: only when the run applied at least one batch. A load that found nothing
    to apply (transform stuck, ingest stopped) is not a sign of life: the dead man's switch
    must fire then. With the DAG's schedule a healthy pipeline applies a batch, if only an
    empty one, on every load run."""
    batches = list(tables)
    if not batches:
        return []
    totals: dict[str, int] = {}
    for batch in batches:
        for table, counts in batch.items():
            totals[table] = (
                totals.get(table, 0) + counts.get("inserted", 0) + counts.get("updated", 0)
            )
    metrics = [
        Metric("RowsLoaded", float(n), "Count", "load", t) for t, n in sorted(totals.items())
    ]
    return [*metrics, Metric("LoadSucceeded", 1.0, "Count", "load")]


def warehouse_lag(waited: timedelta | None) -> Metric:
    seconds = 0.0 if waited is None else max(waited.total_seconds(), 0.0)
    return Metric("WarehouseLagSeconds", round(seconds, 3), "Seconds", "freshness")


def reconcile_differences(tables: int) -> Metric:
    """How many warehouse tables disagree with the source (should be 0)."""
    return Metric("ReconcileDifferences", float(tables), "Count", "reconcile")


def sweep_missed_versions(versions: int) -> Metric:
    """How many versions the nightly sweep added that the incremental batches had missed
    (should be 0; see etl.ops.sweep.missed_versions)."""
    return Metric("SweepMissedVersions", float(versions), "Count", "sweep")


def task_outcome(task_id: str, outcome: str, seconds: float | None) -> list[Metric]:
    """One finished Airflow task try: outcome is success, failed or retry."""
    extra = (("Outcome", outcome),)
    metrics = [Metric("TaskOutcome", 1.0, "Count", task_id, extra=extra)]
    if seconds is not None:
        metrics.append(Metric("TaskSeconds", round(seconds, 3), "Seconds", task_id, extra=extra))
    return metrics


def ingest_run(tables: Mapping[str, Mapping[str, Any]], seconds: float) -> list[Metric]:
    """One ingest: the manifest's per-table rows and bytes (none when it made no batch)."""
    return [
        *table_metrics("ingest", "RowsExtracted", "BytesExtracted", tables),
        stage_seconds("ingest", seconds),
    ]


def transform_run(
    manifests: Iterable[Mapping[str, Mapping[str, Any]]], seconds: float, still_pending: int
) -> list[Metric]:
    """One transform run over several batches: rows and bytes summed per warehouse table."""
    totals: dict[str, dict[str, int]] = {}
    for tables in manifests:
        for table, entry in tables.items():
            total = totals.setdefault(table, {"rows": 0, "bytes": 0})
            total["rows"] += int(entry.get("rows", 0))
            total["bytes"] += int(entry.get("bytes", 0) or 0)
    return [
        *table_metrics("transform", "RowsTransformed", "BytesTransformed", totals),
        stage_seconds("transform", seconds),
        pending("transform", still_pending),
    ]


def rejected_rows(manifests_rejects: Iterable[Mapping[str, Mapping[str, Any]]]) -> list[Metric]:
    """RejectedRows: rows one transform run set aside, per warehouse table and in total (0
    when none, so an alarm on it sees data every run)."""
    totals: dict[str, int] = {}
    for rejects in manifests_rejects:
        for table, entry in rejects.items():
            totals[table] = totals.get(table, 0) + int(entry.get("rows", 0))
    return [
        *(
            Metric("RejectedRows", float(n), "Count", "transform", t)
            for t, n in sorted(totals.items())
        ),
        Metric("RejectedRows", float(sum(totals.values())), "Count", "transform"),
    ]


def load_run(
    batches: Iterable[Mapping[str, Mapping[str, int]]], seconds: float, still_pending: int
) -> list[Metric]:
    return [*loaded_rows(batches), stage_seconds("load", seconds), pending("load", still_pending)]


class MetricsChoice(Protocol):
    """Which sink, and what it records under: the four settings both `etl.config.Settings`
    and the DAG's `DagConfig` carry (declared once in etl.config)."""

    @property
    def metrics_sink(self) -> str: ...
    @property
    def metrics_file(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def metrics_namespace(self) -> str: ...


def sink_for(choice: MetricsChoice, cloudwatch: Callable[[], Any]) -> MetricsSink:
    """The sink `choice.metrics_sink` names (refused as the settings refuse it), for its
    environment; `cloudwatch` makes the CloudWatch client, called only for that sink."""
    check_metrics_sink(choice.metrics_sink, choice.metrics_file)
    if choice.metrics_sink == "cloudwatch":
        return CloudWatchMetrics(cloudwatch(), choice.environment, choice.metrics_namespace)
    if choice.metrics_sink == "local":
        return JsonLinesMetrics(Path(choice.metrics_file), choice.environment)
    return NoMetrics()


# --- the local summary -------------------------------------------------------------------


def summary(records: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    """`python -m etl status`'s view of the local metrics: the latest run of each stage, the
    latest lag, and task outcomes over the last day."""
    if not records:
        return ["metrics: none recorded yet"]
    lines = ["metrics (local):"]
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record["name"] == "StageSeconds":
            latest[record["stage"]] = record
    for stage in ("ingest", "transform", "load"):
        if stage not in latest:
            continue
        at = latest[stage]["at"]
        rows_name = {
            "ingest": "RowsExtracted",
            "transform": "RowsTransformed",
            "load": "RowsLoaded",
        }
        rows = sum(
            r["value"]
            for r in records
            if r["name"] == rows_name[stage] and r["stage"] == stage and r["at"] == at
        )
        lines.append(f"  last {stage}: {at} {latest[stage]['value']:.2f}s, {int(rows)} rows")
    lags = [r for r in records if r["name"] == "WarehouseLagSeconds"]
    if lags:
        lines.append(f"  warehouse lag: {lags[-1]['value']:.0f}s at {lags[-1]['at']}")
    day_ago = now - timedelta(days=1)
    outcomes: dict[str, int] = {}
    for r in records:
        if r["name"] == "TaskOutcome" and datetime.fromisoformat(r["at"]) >= day_ago:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    if outcomes:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        lines.append(f"  task tries in the last 24h: {shown}")
    return lines
