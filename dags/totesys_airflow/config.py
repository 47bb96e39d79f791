"""The DAG's own settings: schedules, alert recipients, buckets. Nothing secret lives here;
credentials come from the connections `totesys_db`, `warehouse_db`, `aws_default` and
`smtp_default` (Secrets Manager on MWAA)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

PREFIX = "AIRFLOW__TOTESYS__"


@dataclass(frozen=True)
class DagConfig:
    ingest_schedule: str = "*/5 * * * *"  # cron: how often a batch is extracted
    load_every_minutes: int = 15  # load runs when a run's interval ends on a multiple of this
    freshness_threshold_minutes: int = 30  # alert when a source change waited longer
    alert_emails: tuple[str, ...] = ("data-team@terrifictotes.com",)
    alert_from: str = "totesys-airflow@terrifictotes.com"
    ingestion_bucket: str = "totesys-ingestion"
    processed_bucket: str = "totesys-processed"
    overlap_seconds: float = 900.0
    warehouse_schema: str = "public"
    warehouse_name_map: str = ""
    retries: int = 3
    retry_delay_seconds: int = 30
    task_timeout_minutes: int = 20
    source_timezone: str = "UTC"  # the zone totesys writes its naive timestamps in
    metrics_sink: str = "none"  # none | local | cloudwatch (MWAA)
    metrics_file: str = ""  # the local sink's JSON lines file
    environment: str = "local"  # the Environment dimension of every metric
    metrics_namespace: str = "Totesys/Pipeline"  # CloudWatch; the deployer sets one per environment
    expected_bucket_owner: str = ""  # AWS account that must own the buckets (set by the deployer)
    sweep_at: str = "02:00"  # HH:MM UTC: the run whose interval ends then is the nightly sweep
    sweep_hours: float = 26.0  # how far back the sweep re-reads (a day plus margin)
    # a row that cannot become a warehouse row: set_aside (rejects area, one email per
    # batch) or fail (the task fails, every later change waits for the correction)
    bad_row_policy: str = "set_aside"
    reconcile_schedule: str = (
        "30 3 * * *"  # cron: when totesys_reconcile compares warehouse and source
    )

    def __post_init__(self) -> None:
        hour, _, minute = self.sweep_at.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60
                and len(hour) == len(minute) == 2):  # fmt: skip
            raise ValueError(f"{PREFIX}SWEEP_AT must be HH:MM (UTC), not {self.sweep_at!r}")
        if self.sweep_hours <= 0:
            raise ValueError(f"{PREFIX}SWEEP_HOURS must be positive, not {self.sweep_hours}")

    @property
    def freshness_threshold(self) -> timedelta:
        return timedelta(minutes=self.freshness_threshold_minutes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DagConfig:
        """Each field from AIRFLOW__TOTESYS__<FIELD>, else its default."""
        values: dict[str, Any] = {}
        defaults = cls()
        for name in cls.__dataclass_fields__:
            raw = env.get(PREFIX + name.upper(), "").strip()
            if not raw:
                continue
            kind = type(getattr(defaults, name))
            if kind is tuple:
                values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
            else:
                values[name] = kind(raw)
        return cls(**values)
