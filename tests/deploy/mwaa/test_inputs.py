"""Bad input is refused in one line before anything is written: mangled database URLs
(without a trace of their password), DAG settings the DAG could not read, and values MWAA
would refuse minutes into a deployment."""

from __future__ import annotations

import pytest

from deploy.mwaa.config import DeployConfig, supported_airflow_versions
from etl.config import MALFORMED, Secret, describe_url
from tests.conftest import REPO_ROOT
from tests.deploy.mwaa.conftest import (
    SECRET_ENV,
    SUBNETS,
    Deployment,
    as_get_environment,
    expect_create,
    not_found,
)

MANGLED = [
    # (URL, fragments of its password that must appear nowhere)
    ("postgresql://reader:Tr0ub4dor@3:Sup3rS3cretTail/x@host:5432/db", ("Tr0ub4dor", "Sup3rS3cretTail")),
    ("postgresql://reader:abc@def@host:5432/db", ("abc", "def@")),
    ("postgresql://reader:Front/Back@host:5432/db", ("Front", "Back@")),
    ("postgresql://reader:Pct%zzTail@host:5432/db", ("Pct", "zzTail")),
]  # fmt: skip


def _writes(deployment: Deployment) -> list[str]:
    listed = deployment.clients.secretsmanager.list_secrets()["SecretList"]
    secrets = [s["Name"] for s in listed if deployment.env_name in s["Name"]]
    return secrets + sorted(deployment.buckets())


@pytest.mark.parametrize(("url", "fragments"), MANGLED)
def test_a_mangled_url_is_refused_in_one_line_without_a_trace_of_its_password(
    deployment: Deployment,
    url: str,
    fragments: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    not_found(deployment.stub)
    # the warehouse URL is the second secret: the first one is not written either
    assert deployment.run(env=dict(SECRET_ENV, WAREHOUSE_DB_URL=url)) == 1

    captured = capsys.readouterr()
    assert captured.err.startswith("error: WAREHOUSE_DB_URL: the URL ")
    assert "percent-encode '@' as %40, '/' as %2F, ':' as %3A" in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    seen = "\n".join([captured.out, captured.err, caplog.text, *deployment.output])
    for fragment in fragments:
        assert fragment not in seen
    assert _writes(deployment) == []
    # etl reads URLs by the same rules: nothing of it in its messages either
    assert describe_url(Secret(url)) == MALFORMED


def test_a_percent_encoded_password_is_stored_decoded(deployment: Deployment) -> None:
    url = "postgresql://reader:Tr0ub4dor%403%3ASup3r%2Fx@totesys.example.com:5432/totesys"
    expect_create(deployment)
    assert deployment.run(env=dict(SECRET_ENV, TOTESYS_DB_URL=url)) == 0
    import json

    stored = json.loads(deployment.clients.secretsmanager.get_secret_value(
        SecretId=f"{deployment.secrets_prefix}/totesys_db")["SecretString"])  # fmt: skip
    assert (stored["host"], stored["password"]) == ("totesys.example.com", "Tr0ub4dor@3:Sup3r/x")


def test_every_value_is_checked_before_the_first_secret_is_written(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    not_found(deployment.stub)
    env = {key: value for key, value in SECRET_ENV.items() if key != "SES_SMTP_PASSWORD"}
    assert deployment.run(env=env) == 1
    assert "smtp_default does not exist: set SES_SMTP_USERNAME and SES_SMTP_PASSWORD" in (
        capsys.readouterr().err
    )
    assert _writes(deployment) == []


@pytest.mark.parametrize(("option", "error"), [
    ("totesys.load_every_minutes=15m",
     "option totesys.load_every_minutes: the DAG cannot read it (invalid literal for int() with base 10: '15m')"),
    ("totesys.load_every_minutes=0", "option totesys.load_every_minutes must be at least 1"),
    ("totesys.ingest_schedule=*/5 * * *",
     "option totesys.ingest_schedule '*/5 * * *' is not a cron expression"),
    ("totesys.ingest_schedule=*/5 * * * MON-FRY",
     "option totesys.ingest_schedule '*/5 * * * MON-FRY' is not a cron expression"),
    ("totesys.load_every_minute=5",
     "option totesys.load_every_minute: the DAG has no such setting (did you mean totesys.load_every_minutes?)"),
    ("totesys.warehouse_schema=dw; drop",
     "option totesys.warehouse_schema: WAREHOUSE_SCHEMA 'dw; drop' is not a plain identifier"),
    # the pipeline settings among the options, read as every task would read them
    ("totesys.source_timezone=Mars/Olympus",
     "option totesys.source_timezone: SOURCE_TIMEZONE 'Mars/Olympus' is not an IANA time zone"),
    ("totesys.bad_row_policy=skip",
     "option totesys.bad_row_policy: BAD_ROW_POLICY 'skip' is not one of set_aside, fail"),
    ("totesys.overlap_seconds=inf",
     "option totesys.overlap_seconds: INGEST_OVERLAP_SECONDS must be a number of seconds, not 'inf'"),
    ("totesys.warehouse_name_map=dim_date",
     "option totesys.warehouse_name_map: WAREHOUSE_NAME_MAP: 'dim_date' is not canonical=target"),
])  # fmt: skip
def test_a_dag_setting_the_dag_could_not_read_is_refused_before_anything_is_written(
    deployment: Deployment, option: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deployment.run("--option", option) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"error: {error}") and stderr.count("\n") == 1
    assert deployment.sent == {}
    assert _writes(deployment) == []


def test_valid_dag_settings_reach_mwaa(deployment: Deployment) -> None:
    expect_create(deployment)
    assert deployment.run("--option", "totesys.load_every_minutes=30",
                          "--option", "totesys.ingest_schedule=*/10 6-22 * * MON-FRI") == 0  # fmt: skip
    options = deployment.sent["CreateEnvironment"][0]["AirflowConfigurationOptions"]
    assert options["totesys.load_every_minutes"] == "30"
    assert options["totesys.ingest_schedule"] == "*/10 6-22 * * MON-FRI"


@pytest.mark.parametrize(("args", "error"), [
    (("--env-name", "Prod"), "environment name 'Prod': up to 80 lower-case letters"),
    (("--env-name", "9lives"), "environment name '9lives': up to 80 lower-case letters"),
    (("--env-name", "a" * 81), "environment name 'aaaa"),
    (("--env-name", "x" * 41), "bucket name 'airflow-totesys-xxxx"),
    (("--prefix", "Team"), "prefix 'Team': lower-case letters"),
    (("--schedulers", "1"), "mw1.small runs 2 to 5 scheduler(s), not 1"),
    (("--environment-class", "mw1.micro"), "mw1.micro runs 1 to 1 scheduler(s), not 2"),
    (("--environment-class", "mw1.huge"), "environment class 'mw1.huge': one of mw1.micro"),
    (("--subnet-ids", f"{SUBNETS[0]},{SUBNETS[0]}"), "--subnet-ids: two distinct subnet-... ids"),
    (("--subnet-ids", SUBNETS[0]), "--subnet-ids: two distinct subnet-... ids"),
    (("--option", f"core.{'k' * 60}=1"), f"option 'core.{'k' * 60}' is longer than 64 characters"),
    (("--option", "core.default_timezone=Europe/Zürich"),
     "option core.default_timezone: MWAA takes 1 to 65536 printable ASCII characters"),
    (("--max-workers", "99"), "workers: need 1 <= --min-workers <= --max-workers <= 25"),
    (("--alert-emails", "not-an-email"), "'not-an-email' is not an email address"),
    (("--alert-from", "ops@localhost"), "'ops@localhost' is not an email address"),
    (("--secrets-prefix", "*"), "secrets prefix '*': letters, digits and /_+=.@- only"),
    (("--secrets-prefix", "airflow/*/connections"), "secrets prefix 'airflow/*/connections'"),
    (("--prefix", "x" * 70), "environment name 'xxxx"),
    (("--break-glass-role", "arn:aws:iam::1:role/x"), "--break-glass-role 'arn:aws:iam::1:role/x'"),
    (("--airflow-version", "2.10.3"), "--airflow-version '2.10.3': one of 3.0.6, 3.3.1, the MWAA"),
    (("--airflow-version", "3.3"), "--airflow-version '3.3': one of 3.0.6, 3.3.1, the MWAA"),
])  # fmt: skip
def test_what_mwaa_would_refuse_is_refused_before_anything_is_written(
    deployment: Deployment, args: tuple[str, ...], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deployment.run(*args) == 1  # argparse: the last --env-name/--subnet-ids wins
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"error: {error}") and stderr.count("\n") == 1, stderr
    assert deployment.sent == {}
    assert _writes(deployment) == []


def test_exactly_the_airflow_versions_with_constraints_in_the_repository_are_accepted() -> None:
    carried = sorted(
        p.name.removeprefix("mwaa-airflow-").removesuffix("-constraints.txt")
        for p in (REPO_ROOT / "constraints").glob("mwaa-airflow-*-constraints.txt")
    )
    assert list(supported_airflow_versions()) == carried == ["3.0.6", "3.3.1"]
    for version in carried:
        DeployConfig("prod", airflow_version=version).validate()


def test_names_differing_only_in_case_cannot_share_buckets_or_a_role() -> None:
    DeployConfig("prod").validate()
    with pytest.raises(Exception, match="lower-case"):
        DeployConfig("PROD").validate()


def test_a_validation_error_of_create_environment_is_reported_at_once(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    not_found(deployment.stub)
    message = "Invalid request provided: Provided bucket does not have BlockPublicAccess set"
    deployment.stub.add_client_error("create_environment", service_error_code="ValidationException",
                                     service_message=message, http_status_code=400)  # fmt: skip

    assert deployment.run() == 1
    deployment.stub.assert_no_pending_responses()
    assert len(deployment.sent["CreateEnvironment"]) == 1
    assert not [line for line in deployment.output if "not visible to MWAA yet" in line]
    assert capsys.readouterr().err == (
        "error: AWS refused CreateEnvironment: ValidationException: Invalid request provided: "
        "Provided bucket does not have BlockPublicAccess set\n"
    )


def test_an_existing_environment_with_nothing_new_still_validates_dag_settings(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_create(deployment)
    assert deployment.run() == 0
    created = deployment.sent["CreateEnvironment"][0]
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    assert deployment.run("--option", "totesys.retries=-1") == 1
    assert capsys.readouterr().err == "error: option totesys.retries must be at least 0\n"
    assert "UpdateEnvironment" not in deployment.sent


@pytest.mark.parametrize("option", [
    'secrets.backend_kwargs={"connections_prefix": "airflow/prod/connections"}',
    "totesys.ingestion_bucket=someone-elses-bucket",
])  # fmt: skip
def test_an_option_the_deployer_sets_cannot_be_overridden(
    deployment: Deployment, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deployment.run("--option", option) == 1
    key = option.partition("=")[0]
    assert capsys.readouterr().err == (
        f"error: option {key} is set by the deployer; use its flag or leave it out\n"
    )
    assert deployment.sent == {}
    assert _writes(deployment) == []
