"""The connection secrets: written in the form Airflow's Secrets Manager backend reads,
configured as the deployment configures MWAA, and only from env or a hidden prompt."""

from __future__ import annotations

import json

import pytest

from deploy.local.stack import MOTO_CREDENTIALS
from deploy.mwaa.config import DeployConfig
from deploy.mwaa.environment import airflow_options
from tests.deploy.mwaa.conftest import SECRET_ENV, Deployment, expect_create, not_found


def _backend(deployment: Deployment, kwargs_json: str) -> object:
    """Airflow's own backend, with the kwargs MWAA is given, pointed at the emulator."""
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    client = deployment.clients.secretsmanager
    return SecretsManagerBackend(
        **json.loads(kwargs_json),
        endpoint_url=client.meta.endpoint_url,
        region_name=client.meta.region_name,
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def test_airflow_reads_the_connections_and_never_looks_up_aws_default(
    deployment: Deployment,
) -> None:
    expect_create(deployment)
    assert deployment.run() == 0
    options = deployment.sent["CreateEnvironment"][0]["AirflowConfigurationOptions"]
    # a secret named like aws_default exists, yet MWAA's own aws_default (the role) must win
    deployment.clients.secretsmanager.create_secret(
        Name=f"{deployment.secrets_prefix}/aws_default", SecretString='{"conn_type": "aws"}'
    )
    backend = _backend(deployment, options["secrets.backend_kwargs"])

    totesys = backend.get_connection("totesys_db")  # type: ignore[attr-defined]
    assert (totesys.conn_type, totesys.host, totesys.port, totesys.schema, totesys.login) == (
        "postgres", "totesys.example.com", 5432, "totesys", "reader")  # fmt: skip
    assert totesys.password == "S3cr3t-totesys-pw"
    assert totesys.extra_dejson == {"sslmode": "require"}
    smtp = backend.get_connection("smtp_default")  # type: ignore[attr-defined]
    assert (smtp.host, smtp.port, smtp.login) == (
        "email-smtp.eu-west-2.amazonaws.com",
        587,
        "AKIASESUSEREXAMPLE",
    )
    assert smtp.extra_dejson["disable_tls"] is False  # STARTTLS on 587
    assert backend.get_conn_value("aws_default") is None  # type: ignore[attr-defined]
    assert backend.get_variable("anything") is None  # type: ignore[attr-defined]


def test_a_missing_secret_without_values_or_terminal_stops_before_anything_is_written(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    not_found(deployment.stub)
    env = {key: value for key, value in SECRET_ENV.items() if key != "WAREHOUSE_DB_URL"}

    assert deployment.run(env=env) == 1
    error = capsys.readouterr().err
    assert error == (
        f"error: secret {deployment.secrets_prefix}/warehouse_db does not exist: "
        "set WAREHOUSE_DB_URL or run in a terminal to be prompted\n"
    )
    buckets = {bucket["Name"] for bucket in deployment.clients.s3.list_buckets()["Buckets"]}
    assert not any(deployment.env_name in bucket for bucket in buckets)


def test_values_typed_at_the_prompt_are_stored_and_never_echoed(deployment: Deployment) -> None:
    from deploy.mwaa.cli import main
    from tests.deploy.mwaa.conftest import SECURITY_GROUP, SUBNETS

    typed = {"TOTESYS_DB_URL": SECRET_ENV["TOTESYS_DB_URL"], "WAREHOUSE_DB_URL": SECRET_ENV["WAREHOUSE_DB_URL"],
             "SES_SMTP_USERNAME": "AKIATYPED", "SES_SMTP_PASSWORD": "typed-Secret-9"}  # fmt: skip
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return typed[question.split(" ")[0]]

    expect_create(deployment)
    argv = ["--env-name", deployment.env_name, "--project-root", str(deployment.project),
            "--secrets-prefix", deployment.secrets_prefix,
            "--subnet-ids", ",".join(SUBNETS), "--security-group-ids", SECURITY_GROUP]  # fmt: skip
    assert (
        main(argv, clients=deployment.clients, env={}, prompt=prompt, say=deployment.output.append)
        == 0
    )

    assert [question.split(" ")[0] for question in asked] == list(typed)
    stored = deployment.clients.secretsmanager.get_secret_value(
        SecretId=f"{deployment.secrets_prefix}/smtp_default"
    )
    assert json.loads(stored["SecretString"])["password"] == "typed-Secret-9"
    assert not [line for line in deployment.output if "typed-Secret-9" in line or "S3cr3t" in line]


def test_backend_options_skip_aws_default_and_variables() -> None:
    kwargs = json.loads(airflow_options(DeployConfig("prod"))["secrets.backend_kwargs"])
    assert kwargs["connections_prefix"] == "airflow/connections"
    assert kwargs["variables_prefix"] is None and kwargs["config_prefix"] is None
