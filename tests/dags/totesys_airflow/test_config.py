"""The DAG's settings come from AIRFLOW__TOTESYS__* with typed defaults; those that are
pipeline settings are the pipeline's declarations, read under their Airflow option."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from etl.config import Settings, declarations, extra
from etl.errors import ConfigError
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


def test_the_dag_takes_each_pipeline_setting_with_an_airflow_option_under_that_option() -> None:
    """DagConfig composes the declarations: every pipeline setting that names a `[totesys]`
    option is a DagConfig field of that name, linked to it, and nothing else is."""
    options = {
        extra(info, "airflow_option"): name
        for name, info in declarations(Settings).items()
        if extra(info, "airflow_option")
    }
    linked = {
        name: extra(info, "setting")
        for name, info in declarations(DagConfig).items()
        if extra(info, "owner") == "Settings"
    }
    assert linked == options


def test_a_shared_setting_has_the_pipeline_default_and_description_unless_the_dag_differs() -> None:
    dag, settings = DagConfig(), Settings()
    assert dag.overlap_seconds == settings.overlap.total_seconds()
    assert dag.warehouse_schema == settings.warehouse_schema
    assert dag.bad_row_policy == settings.bad_row_policy
    assert (dag.ingestion_bucket, dag.processed_bucket) == (
        "totesys-ingestion",
        "totesys-processed",
    )
    overlap = declarations(DagConfig)["overlap_seconds"]
    assert overlap.description == declarations(Settings)["overlap"].description


def test_the_options_that_are_pipeline_settings_become_the_pipeline_settings() -> None:
    config = DagConfig.from_env({
        "AIRFLOW__TOTESYS__OVERLAP_SECONDS": "60",
        "AIRFLOW__TOTESYS__WAREHOUSE_NAME_MAP": "fact_purchase_orders=fact_purchase_order",
        "AIRFLOW__TOTESYS__METRICS_SINK": "local",
        "AIRFLOW__TOTESYS__METRICS_FILE": "/tmp/m.jsonl",
        "AIRFLOW__TOTESYS__BAD_ROW_POLICY": "fail",
    })  # fmt: skip
    settings = Settings.from_text(config.pipeline_options(), tables=("staff",))
    assert settings.overlap == timedelta(seconds=60)
    assert settings.warehouse_names.table("fact_purchase_orders") == "fact_purchase_order"
    assert (settings.metrics_sink, settings.metrics_file) == ("local", "/tmp/m.jsonl")
    assert (settings.ingestion_bucket, settings.bad_row_policy) == ("totesys-ingestion", "fail")
    assert settings.tables == ("staff",)


def test_a_bad_pipeline_option_fails_when_the_settings_are_built_not_when_the_dag_is_read() -> None:
    config = DagConfig.from_env({"AIRFLOW__TOTESYS__SOURCE_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="^SOURCE_TIMEZONE 'Mars/Olympus' is not an IANA"):
        Settings.from_text(config.pipeline_options())


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SWEEP_AT", "4:15", "AIRFLOW__TOTESYS__SWEEP_AT must be HH:MM (UTC), not '4:15'"),
    ("SWEEP_HOURS", "0", "AIRFLOW__TOTESYS__SWEEP_HOURS must be positive, not 0.0"),
    ("RETRIES", "three", "invalid literal for int() with base 10: 'three'"),
])  # fmt: skip
def test_an_option_the_dag_cannot_read_is_refused_in_one_line(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        DagConfig.from_env({f"AIRFLOW__TOTESYS__{name}": value})
    assert str(refused.value) == message
