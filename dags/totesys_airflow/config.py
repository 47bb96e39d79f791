"""The DAG's own settings: schedules, retries, the nightly sweep; and the pipeline settings
it takes as Airflow options, declared once in `etl.config` (`shared`). Nothing secret lives
here; credentials come from the connections `totesys_db`, `warehouse_db`, `aws_default` and
`smtp_default` (Secrets Manager on MWAA)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import Field, ValidationError
from pydantic.dataclasses import dataclass

from etl.config import (
    CONFIGURATION,
    AlertSettings,
    Settings,
    declarations,
    extra,
    shared,
)

PREFIX = "AIRFLOW__TOTESYS__"


@dataclass(frozen=True, config=CONFIGURATION)
class DagConfig:
    """Each field is the Airflow option `[totesys] <field>`, i.e. AIRFLOW__TOTESYS__<FIELD>.
    The pipeline settings among them are checked when a task builds the Settings, so a bad
    one fails that task with an email instead of the DAG's import (and the MWAA deployer
    reads them with that same Settings before it deploys: deploy/mwaa/dag_options.py)."""

    ingest_schedule: str = Field(
        default="*/5 * * * *", description="cron: how often a batch is extracted"
    )
    load_every_minutes: int = Field(
        default=15, description="load runs when a run's interval ends on a multiple of this"
    )
    freshness_threshold_minutes: int = Field(
        default=30,
        description="alert when a source change waited longer than this without reaching "
        "the warehouse",
    )
    alert_emails: tuple[str, ...] = shared(AlertSettings, "alert_emails")
    alert_from: str = shared(AlertSettings, "alert_from")
    ingestion_bucket: str = shared(Settings, "ingestion_bucket", default="totesys-ingestion")
    processed_bucket: str = shared(Settings, "processed_bucket", default="totesys-processed")
    overlap_seconds: float = shared(Settings, "overlap")
    warehouse_schema: str = shared(Settings, "warehouse_schema")
    warehouse_name_map: str = shared(Settings, "warehouse_names")
    retries: int = Field(
        default=3, description="tries after the first, for an outage or a held lease"
    )
    retry_delay_seconds: int = Field(
        default=30, description="the first wait before a retry; it doubles, up to 5 minutes"
    )
    task_timeout_minutes: int = Field(default=20, description="a task running longer is stopped")
    source_timezone: str = shared(Settings, "source_timezone")
    metrics_sink: str = shared(Settings, "metrics_sink")
    metrics_file: str = shared(Settings, "metrics_file")
    environment: str = shared(Settings, "environment")
    metrics_namespace: str = shared(Settings, "metrics_namespace")
    expected_bucket_owner: str = shared(Settings, "expected_bucket_owner")
    sweep_at: str = Field(
        default="02:00",
        description="HH:MM UTC: the run whose interval ends then is the nightly sweep (it "
        "must be a fire time of `ingest_schedule`)",
    )
    sweep_hours: float = Field(
        default=26.0,
        description="how far back the sweep re-reads: a day plus margin for a late run",
    )
    bad_row_policy: str = shared(Settings, "bad_row_policy")
    reconcile_schedule: str = Field(
        default="30 3 * * *",
        description="cron: when `totesys_reconcile` compares the warehouse with the source",
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
        """Each field from AIRFLOW__TOTESYS__<FIELD>, else its default; a value that does not
        read or check is refused in one line (ValueError)."""
        values: dict[str, Any] = {}
        for name, info in declarations(cls).items():
            raw = env.get(PREFIX + name.upper(), "").strip()
            if not raw:
                continue
            kind: Any = info.annotation
            if kind == tuple[str, ...]:
                values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
            else:
                values[name] = kind(raw)  # int('15m') says what is wrong
        try:
            return cls(**values)
        except ValidationError as error:
            # pydantic's message spans lines; the first error's own words are one line
            message = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(message) from None

    def pipeline_options(self) -> dict[str, str]:
        """The pipeline settings among these options, by Settings field, as text: what
        `Settings.from_text` reads."""
        return {
            extra(info, "setting"): str(getattr(self, name))
            for name, info in declarations(DagConfig).items()
            if extra(info, "owner") == Settings.__name__
        }
