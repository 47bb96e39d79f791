"""The connection secrets: written in the form Airflow's Secrets Manager backend reads,
configured as the deployment configures MWAA, and only from env or a hidden prompt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from psycopg.conninfo import conninfo_to_dict

from deploy.mwaa.config import DeployConfig
from deploy.mwaa.environment import airflow_options
from devstack.stack import MOTO_CREDENTIALS
from tests.conftest import REPO_ROOT
from tests.deploy.mwaa.conftest import SECRET_ENV, Deployment, commit, expect_create, not_found


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
    options = airflow_options(DeployConfig("prod"), "123456789012")
    kwargs = json.loads(options["secrets.backend_kwargs"])
    assert kwargs["connections_prefix"] == "airflow/totesys-prod/connections"
    assert kwargs["variables_prefix"] is None and kwargs["config_prefix"] is None


def test_a_second_environment_plans_only_its_own_secrets(deployment: Deployment) -> None:
    expect_create(deployment)
    assert deployment.run() == 0
    test = {tag["Key"]: tag["Value"] for tag in deployment.clients.secretsmanager.describe_secret(
        SecretId=f"{deployment.secrets_prefix}/totesys_db")["Tags"]}  # fmt: skip
    assert test["mwaa-environment"] == deployment.mwaa_name
    prod = deployment.another_environment()
    deployment.output.clear()
    new_urls = dict(
        SECRET_ENV, TOTESYS_DB_URL="postgresql://reader:pw-prod@prod-db.example.com/totesys"
    )

    nothing: dict[str, str] = {}
    for env in (new_urls, nothing):  # with new values, and with none
        not_found(deployment.stub)
        assert prod.run("--dry-run", env=env) == 0
        secrets = [line for line in deployment.output if "secret " in line]
        assert secrets == [
            f"would secret airflow/totesys-{prod.env_name}/connections/{conn_id}: "
            + ("create" if env else "create (values from env or prompt)")
            for conn_id in ("totesys_db", "warehouse_db", "smtp_default")
        ]
        assert not [line for line in deployment.output if deployment.env_name in line]
        deployment.output.clear()
    options = json.loads(
        airflow_options(DeployConfig(prod.env_name), "123456789012")["secrets.backend_kwargs"]
    )
    assert options["connections_prefix"] == f"airflow/totesys-{prod.env_name}/connections"


@pytest.mark.parametrize("with_values", [True, False])
def test_a_secret_of_another_environment_is_refused_whether_or_not_values_are_given(
    deployment: Deployment, with_values: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_create(deployment)
    assert deployment.run() == 0
    before = deployment.clients.secretsmanager.get_secret_value(
        SecretId=f"{deployment.secrets_prefix}/totesys_db"
    )["VersionId"]
    prod = deployment.another_environment()
    not_found(deployment.stub)
    capsys.readouterr()

    # prod pointed at test's prefix: with values it would overwrite them, without it
    # would quietly run against test's databases
    code = prod.run("--secrets-prefix", deployment.secrets_prefix,
                    env=SECRET_ENV if with_values else {})  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err == (
        f"error: secret {deployment.secrets_prefix}/totesys_db belongs to environment "
        f"'{deployment.mwaa_name}', not '{prod.mwaa_name}': give each environment its own "
        f"--secrets-prefix, or tag the secret mwaa-environment={prod.mwaa_name} if it is "
        "this environment's\n"
    )
    assert prod.buckets() == set()
    after = deployment.clients.secretsmanager.get_secret_value(
        SecretId=f"{deployment.secrets_prefix}/totesys_db"
    )["VersionId"]
    assert after == before


def test_an_untagged_secret_under_the_prefix_is_not_taken_over(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.clients.secretsmanager.create_secret(
        Name=f"{deployment.secrets_prefix}/warehouse_db", SecretString='{"conn_type": "postgres"}'
    )
    not_found(deployment.stub)
    assert deployment.run() == 1
    assert capsys.readouterr().err.startswith(
        f"error: secret {deployment.secrets_prefix}/warehouse_db belongs to no project "
        "(no project tag), not 'totesys'"
    )
    assert deployment.buckets() == set()
    with pytest.raises(ClientError):  # totesys_db is planned before it, yet not written
        deployment.clients.secretsmanager.describe_secret(
            SecretId=f"{deployment.secrets_prefix}/totesys_db"
        )


def test_tls_settings_of_the_url_reach_airflow(deployment: Deployment) -> None:
    bundle = deployment.project / "dags" / "certs" / "global-bundle.pem"
    bundle.parent.mkdir()
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n")
    commit(deployment.project, "a CA bundle")
    url = ("postgresql://reader:S3cr3t-totesys-pw@totesys.example.com:5432/totesys"
           "?sslmode=verify-full&sslrootcert=certs/global-bundle.pem&connect_timeout=10")  # fmt: skip
    expect_create(deployment)
    assert deployment.run(env=dict(SECRET_ENV, TOTESYS_DB_URL=url)) == 0
    options = deployment.sent["CreateEnvironment"][0]["AirflowConfigurationOptions"]

    totesys = _backend(deployment, options["secrets.backend_kwargs"]).get_connection("totesys_db")  # type: ignore[attr-defined]
    assert totesys.extra_dejson == {
        "sslmode": "verify-full",
        "sslrootcert": "certs/global-bundle.pem",
        "connect_timeout": "10",
    }
    assert "dags/certs/global-bundle.pem" in {
        item["Key"]
        for item in deployment.clients.s3.list_objects_v2(Bucket=deployment.source_bucket)[
            "Contents"
        ]
    }


@pytest.mark.parametrize(("query", "error"), [
    ("sslmode=disable", "TOTESYS_DB_URL: sslmode must be one of require, verify-ca, verify-full on AWS"),
    ("sslmode=verify-full", "TOTESYS_DB_URL: sslmode=verify-full needs sslrootcert=<CA bundle in dags/>"),
    ("sslmode=verify-ca&sslrootcert=certs/missing.pem",
     "TOTESYS_DB_URL: sslrootcert certs/missing.pem is not a tracked file of the DAG folder"),
    ("connect_timeout=soon", "TOTESYS_DB_URL: connect_timeout must be a whole number of seconds"),
    ("application_name=x", "TOTESYS_DB_URL: parameter(s) application_name are not kept"),
    ("port=5432,5433", "TOTESYS_DB_URL: the port must be one number from 1 to 65535"),
])  # fmt: skip
def test_tls_settings_that_cannot_work_on_mwaa_are_refused_before_anything_is_written(
    deployment: Deployment, query: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://reader:S3cr3t-totesys-pw@totesys.example.com:5432/totesys?{query}"
    not_found(deployment.stub)
    assert deployment.run(env=dict(SECRET_ENV, TOTESYS_DB_URL=url)) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"error: {error}") and stderr.count("\n") == 1
    assert "S3cr3t" not in stderr
    assert deployment.buckets() == set()


def test_the_dag_finds_the_shipped_ca_bundle_wherever_its_folder_is(tmp_path: Path) -> None:
    """The secret's relative sslrootcert, read by the DAG's own connections.py from a copy
    of the DAG folder placed elsewhere (as MWAA does), names the bundle in that folder."""
    dags = tmp_path / "usr" / "local" / "airflow" / "dags"
    shutil.copytree(REPO_ROOT / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    connection = {"conn_type": "postgres", "host": "db.example.com", "port": 5432,
                  "login": "reader", "password": "S3cr3t-pw", "schema": "totesys",
                  "extra": {"sslmode": "verify-full", "sslrootcert": "certs/global-bundle.pem",
                            "connect_timeout": "10"}}  # fmt: skip
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from totesys_airflow.connections import postgres_url; "
            "print(postgres_url('totesys_db').reveal())")  # fmt: skip
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(REPO_ROOT),
           "AIRFLOW_CONN_TOTESYS_DB": json.dumps(connection)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(dags)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip

    parts = conninfo_to_dict(done.stdout.strip().splitlines()[-1])
    assert parts["sslrootcert"] == str(dags / "certs" / "global-bundle.pem")
    assert (parts["sslmode"], parts["connect_timeout"]) == ("verify-full", "10")
