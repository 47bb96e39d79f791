"""The DAG's settings come from AIRFLOW__TOTESYS__* with typed defaults."""

from __future__ import annotations

import sys

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "dags"))

from totesys_airflow.config import DagConfig


def test_defaults_give_latency_well_under_30_minutes() -> None:
    config = DagConfig.from_env({})
    assert config.ingest_schedule == "*/5 * * * *"
    assert config.load_every_minutes == 15
    assert config.freshness_threshold.total_seconds() == 30 * 60


def test_values_are_typed_from_the_environment() -> None:
    config = DagConfig.from_env({
        "AIRFLOW__TOTESYS__LOAD_EVERY_MINUTES": "5",
        "AIRFLOW__TOTESYS__ALERT_EMAILS": "a@x.com, b@x.com",
        "AIRFLOW__TOTESYS__OVERLAP_SECONDS": "60",
        "AIRFLOW__TOTESYS__INGEST_SCHEDULE": "",
    })  # fmt: skip
    assert config.load_every_minutes == 5
    assert config.alert_emails == ("a@x.com", "b@x.com")
    assert config.overlap_seconds == 60.0
    assert config.ingest_schedule == "*/5 * * * *"
