"""The settings are declared once and read by their declarations: each from its own
variable, refused in one line naming it, a secret never shown; and the settings object
refuses names that are not plain identifiers, whichever edge fills it."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from etl.config import Secret, Settings, declarations, env_name
from etl.errors import ConfigError


@pytest.mark.parametrize("schema", ["public; DROP TABLE dim_staff", 'public"--', ""])
def test_a_warehouse_schema_that_is_not_a_plain_identifier_is_refused_at_construction(
    schema: str,
) -> None:
    # Found writing the bad-input checks: the CLI refused it in from_env, but the DAG builds
    # Settings directly from its [totesys] options, so ingest and transform wrote their
    # batches before load failed on it (composed as an identifier, never injected).
    with pytest.raises(ConfigError, match="WAREHOUSE_SCHEMA .* is not a plain identifier"):
        Settings(warehouse_schema=schema)


def test_from_env_still_defaults_a_blank_schema_to_public() -> None:
    assert Settings.from_env({"WAREHOUSE_SCHEMA": "  "}).warehouse_schema == "public"
    assert Settings.from_env({"WAREHOUSE_SCHEMA": "dw"}).warehouse_schema == "dw"


def test_every_setting_is_read_from_its_declared_environment_variable() -> None:
    env = {
        "TOTESYS_DB_URL": "postgresql://u:pw@h/totesys",
        "WAREHOUSE_DB_URL": "postgresql://u:pw@h/warehouse",
        "INGESTION_BUCKET": " in ",
        "PROCESSED_BUCKET": "out",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "INGEST_OVERLAP_SECONDS": "60",
        "DOCTOR_MIN_AGE_SECONDS": "7200",
        "TOTESYS_TABLES": "staff, department",
        "WAREHOUSE_SCHEMA": "dw",
        "WAREHOUSE_NAME_MAP": "fact_purchase_orders=fact_purchase_order",
        "SOURCE_TIMEZONE": "Europe/London",
        "METRICS_SINK": "local",
        "METRICS_FILE": "/tmp/m.jsonl",
        "PIPELINE_ENVIRONMENT": "dev",
        "METRICS_NAMESPACE": "Totesys/Pipeline/dev",
        "EXPECTED_BUCKET_OWNER": "123456789012",
        "LEASE_WAIT_SECONDS": "5",
        "LEASE_TIMEOUT_SECONDS": "10",
        "BAD_ROW_POLICY": "fail",
    }
    settings = Settings.from_env(env)

    declared = {env_name(Settings, name) for name in declarations(Settings)}
    assert declared == set(env), "each setting has its own variable, and this test sets each"
    assert settings.totesys_db_url is not None
    assert settings.totesys_db_url.reveal() == env["TOTESYS_DB_URL"]
    assert (settings.ingestion_bucket, settings.processed_bucket) == ("in", "out")
    assert (settings.aws_endpoint_url, settings.aws_region) == (
        "http://127.0.0.1:9000",
        "eu-west-1",
    )
    assert (settings.overlap, settings.doctor_min_age) == (timedelta(minutes=1), timedelta(hours=2))
    assert settings.tables == ("department", "staff")  # in the allow-list's order
    assert settings.warehouse_schema == "dw"
    assert settings.warehouse_names.table("fact_purchase_orders") == "fact_purchase_order"
    assert settings.source_zone.key == "Europe/London"
    assert (settings.metrics_sink, settings.metrics_file) == ("local", "/tmp/m.jsonl")
    assert (settings.environment, settings.metrics_namespace) == ("dev", "Totesys/Pipeline/dev")
    assert settings.expected_bucket_owner == "123456789012"
    assert (settings.lease_wait, settings.lease_timeout) == (
        timedelta(seconds=5),
        timedelta(seconds=10),
    )
    assert settings.bad_row_policy == "fail"


def test_blank_or_unset_variables_give_the_declared_defaults() -> None:
    blank = {env_name(Settings, name): "  " for name in declarations(Settings)}
    assert Settings.from_env(blank) == Settings.from_env({}) == Settings()


@pytest.mark.parametrize(("env", "message"), [
    ({"LEASE_WAIT_SECONDS": "-1"}, "LEASE_WAIT_SECONDS must not be negative"),
    ({"LEASE_TIMEOUT_SECONDS": "0.5"}, "LEASE_TIMEOUT_SECONDS must be at least 1 second"),
    ({"LEASE_WAIT_SECONDS": "soon"}, "LEASE_WAIT_SECONDS must be a number of seconds, not 'soon'"),
    ({"INGEST_OVERLAP_SECONDS": "soon"}, "INGEST_OVERLAP_SECONDS must be a number of seconds, not 'soon'"),
    ({"INGEST_OVERLAP_SECONDS": "inf"}, "INGEST_OVERLAP_SECONDS must be a number of seconds, not 'inf'"),
    ({"LEASE_TIMEOUT_SECONDS": "1e300"}, "LEASE_TIMEOUT_SECONDS must be a number of seconds, not '1e300'"),
    ({"LEASE_WAIT_SECONDS": "nan"}, "LEASE_WAIT_SECONDS must be a number of seconds, not 'nan'"),
    ({"DOCTOR_MIN_AGE_SECONDS": "-5"}, "DOCTOR_MIN_AGE_SECONDS must not be negative"),
    ({"SOURCE_TIMEZONE": "Europe/Londn"},
     "SOURCE_TIMEZONE 'Europe/Londn' is not an IANA time zone (e.g. UTC, Europe/London)"),
    ({"METRICS_SINK": "statsd"}, "METRICS_SINK 'statsd' is not one of none, local, cloudwatch"),
    ({"METRICS_SINK": "local"}, "METRICS_SINK=local needs METRICS_FILE, the file to append to"),
    ({"BAD_ROW_POLICY": "skip"}, "BAD_ROW_POLICY 'skip' is not one of set_aside, fail"),
    ({"WAREHOUSE_SCHEMA": "a b"}, "WAREHOUSE_SCHEMA 'a b' is not a plain identifier"),
    ({"TOTESYS_TABLES": "staff,nope"}, "unknown table(s) 'nope'"),
])  # fmt: skip
def test_a_bad_value_is_refused_in_one_line_naming_its_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_require_names_the_variables_of_the_missing_settings() -> None:
    with pytest.raises(
        ConfigError, match=r"^missing setting\(s\): TOTESYS_DB_URL, PROCESSED_BUCKET$"
    ):
        Settings(ingestion_bucket="in").require(
            "totesys_db_url", "ingestion_bucket", "processed_bucket"
        )


def test_settings_stay_immutable_and_a_replaced_value_is_checked_again() -> None:
    settings = Settings()
    with pytest.raises(FrozenInstanceError):
        settings.overlap = timedelta(0)  # type: ignore[misc]
    assert replace(settings, tables=("staff",)).tables == ("staff",)
    with pytest.raises(ConfigError, match="BAD_ROW_POLICY 'skip'"):
        replace(settings, bad_row_policy="skip")


def test_a_secret_shows_in_no_repr_and_no_error() -> None:
    url = "postgresql://reader:hunter2@db.example.com/totesys"
    assert "hunter2" not in repr(Settings(totesys_db_url=Secret(url)))
    # a URL passed bare, not as a Secret, is refused without being quoted back
    with pytest.raises(ValidationError) as refused:
        Settings(totesys_db_url=url)  # type: ignore[arg-type]
    assert "hunter2" not in str(refused.value) and "hunter2" not in repr(refused.value)
