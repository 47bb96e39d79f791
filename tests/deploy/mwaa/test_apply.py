"""`python -m deploy mwaa` against moto (S3, IAM, Secrets Manager) and a stubbed MWAA."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tests.deploy.mwaa.conftest import (
    SECRET_ENV,
    SECRET_VALUES,
    SECURITY_GROUP,
    SUBNETS,
    Deployment,
    as_get_environment,
    commit,
    expect_create,
    git,
    not_found,
)

LOG_TYPES = {"DagProcessingLogs", "SchedulerLogs", "TaskLogs", "WebserverLogs", "WorkerLogs"}


def first_apply(deployment: Deployment) -> dict[str, Any]:
    """Create everything; return the create_environment arguments MWAA received."""
    stub = deployment.stub
    expect_create(deployment)
    assert deployment.run() == 0, deployment.output
    stub.assert_no_pending_responses()
    (created,) = deployment.sent["CreateEnvironment"]
    deployment.sent.clear()
    deployment.output.clear()
    return created


def expect_update(
    deployment: Deployment,
    created: dict[str, Any],
    final: str = "AVAILABLE",
    last_update: dict[str, Any] | None = None,
    stale_first: dict[str, Any] | None = None,
) -> Stubber:
    """MWAA will answer: AVAILABLE, the update, (a stale reading,) UPDATING, then `final`."""
    stub = deployment.stub
    stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    stub.add_response(
        "update_environment", {"Arn": "arn:aws:airflow:eu-west-2:123456789012:environment/x"}
    )
    if stale_first is not None:
        stub.add_response("get_environment", stale_first)
    stub.add_response("get_environment", as_get_environment(created, "UPDATING"))
    finished = {"LastUpdate": last_update} if last_update is not None else {}
    stub.add_response("get_environment", as_get_environment(created, final, **finished))
    return stub


def update_requirements(
    deployment: Deployment,
    created: dict[str, Any],
    line: str,
    final: str,
    last_update: dict[str, Any],
) -> Stubber:
    """Add a line to requirements.txt; MWAA will answer an update that ends `final`."""
    requirements = deployment.project / "requirements.txt"
    requirements.write_text(requirements.read_text() + line + "\n")
    commit(deployment.project, f"requirements: {line}")
    return expect_update(deployment, created, final, last_update)


def test_first_apply_creates_every_resource_with_the_required_settings(
    deployment: Deployment,
) -> None:
    created = first_apply(deployment)
    s3, name = deployment.clients.s3, deployment.env_name
    for bucket in (
        f"airflow-totesys-{name}-source",
        f"totesys-{name}-ingestion",
        f"totesys-{name}-processed",
    ):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                         "BlockPublicPolicy": True, "RestrictPublicBuckets": True}  # fmt: skip
        statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
        by_sid = {statement["Sid"]: statement for statement in statements}
        tls = by_sid["DenyInsecureTransport"]
        assert tls["Effect"] == "Deny"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert set(tls["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        # the raw extracts hold personal data: only the pipeline, the deployer, break-glass
        data = by_sid.get("DataOnlyForPipelineDeployerAndBreakGlass")
        assert (data is None) == (bucket == deployment.source_bucket)
        if data is not None:
            assert data["Effect"] == "Deny" and data["Principal"] == "*"
            assert set(data["Condition"]["ArnNotLike"]["aws:PrincipalArn"]) == {
                f"arn:aws:iam::123456789012:role/totesys-{name}-mwaa-execution",
                "arn:aws:iam::123456789012:role/totesys-break-glass",
                "arn:aws:iam::123456789012:user/moto",  # the deployer, as moto names it
            }
        assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [
            {"Key": "project", "Value": "totesys"}
        ]
        (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30

    source = deployment.source_bucket
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=source)["Contents"]}
    assert {"dags/totesys_etl.py", "dags/.airflowignore", "dags/etl/__init__.py",
            "dags/etl/load/loader.py", "plugins.zip", "requirements.txt"} <= keys  # fmt: skip
    assert not any("__pycache__" in key or key.endswith(".pyc") for key in keys)

    role = deployment.clients.iam.get_role(RoleName=f"totesys-{name}-mwaa-execution")["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert set(trust["Principal"]["Service"]) == {
        "airflow.amazonaws.com",
        "airflow-env.amazonaws.com",
    }
    account = deployment.clients.sts.get_caller_identity()["Account"]
    assert trust["Condition"] == {  # against the confused deputy
        "StringEquals": {"aws:SourceAccount": account},
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:airflow:eu-west-2:{account}:environment/totesys-{name}"
        },
    }

    assert created["Name"] == f"totesys-{name}"
    assert created["Tags"] == {"project": "totesys"}
    assert created["ExecutionRoleArn"] == role["Arn"]
    assert created["SourceBucketArn"] == f"arn:aws:s3:::{source}"
    assert created["AirflowVersion"] == "3.0.6"
    assert created["DagS3Path"] == "dags"
    assert created["PluginsS3ObjectVersion"] == deployment.current_version("plugins.zip")
    assert created["RequirementsS3ObjectVersion"] == deployment.current_version("requirements.txt")
    assert created["NetworkConfiguration"] == {
        "SubnetIds": list(SUBNETS),
        "SecurityGroupIds": [SECURITY_GROUP],
    }
    assert set(created["LoggingConfiguration"]) == LOG_TYPES
    assert all(setting["Enabled"] for setting in created["LoggingConfiguration"].values())
    options = created["AirflowConfigurationOptions"]
    assert options["secrets.backend"].endswith("SecretsManagerBackend")
    assert (
        json.loads(options["secrets.backend_kwargs"])["connections_prefix"]
        == deployment.secrets_prefix
    )
    assert options["totesys.ingestion_bucket"] == f"totesys-{name}-ingestion"
    assert options["smtp.smtp_port"] == "587"
    assert options["totesys.environment"] == f"totesys-{name}"
    assert options["totesys.metrics_namespace"] == f"Totesys/Pipeline/totesys-{name}"
    assert options["totesys.expected_bucket_owner"] == account
    assert options["logging.secret_mask_adapter"] == "urllib.parse.quote"


def test_a_second_apply_with_nothing_changed_changes_nothing(deployment: Deployment) -> None:
    created = first_apply(deployment)
    versions = {key: deployment.versions(key) for key in ("plugins.zip", "dags/totesys_etl.py")}
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 0
    deployment.stub.assert_no_pending_responses()
    assert set(deployment.sent) == {"GetEnvironment"}
    assert deployment.output[-1] == "no changes: everything is already as it should be"
    assert {key: deployment.versions(key) for key in versions} == versions


def test_a_changed_dag_uploads_only_that_file_and_does_not_update_the_environment(
    deployment: Deployment,
) -> None:
    created = first_apply(deployment)
    dag = deployment.project / "dags" / "totesys_etl.py"
    dag.write_text(dag.read_text() + "\n# a comment\n")
    commit(deployment.project, "a comment in the DAG")
    before = deployment.versions("dags/etl/ingest/run.py")
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 0
    changes = [line for line in deployment.output if line.startswith("s3://")]
    assert changes == [
        f"s3://{deployment.source_bucket}/dags/totesys_etl.py: upload (changed)",
        f"s3://{deployment.source_bucket}/deployed-commit.txt: upload (changed)",  # the new commit
    ]
    assert set(deployment.sent) == {"GetEnvironment"}  # no update_environment
    assert len(deployment.versions("dags/totesys_etl.py")) == 2
    assert deployment.versions("dags/etl/ingest/run.py") == before


def test_a_removed_etl_module_is_deleted_from_the_dag_folder(deployment: Deployment) -> None:
    created = first_apply(deployment)
    (deployment.project / "etl" / "ops" / "status.py").unlink()
    commit(deployment.project, "status.py removed")
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 0
    with pytest.raises(ClientError):
        deployment.clients.s3.head_object(
            Bucket=deployment.source_bucket, Key="dags/etl/ops/status.py"
        )


def test_changed_requirements_pass_their_new_version_to_update_environment(
    deployment: Deployment,
) -> None:
    created = first_apply(deployment)
    old_version = created["RequirementsS3ObjectVersion"]
    stub = update_requirements(
        deployment, created, "tenacity==9.1.2", "AVAILABLE", {"Status": "SUCCESS"}
    )

    assert deployment.run() == 0
    stub.assert_no_pending_responses()
    (update,) = deployment.sent["UpdateEnvironment"]
    new_version = deployment.current_version("requirements.txt")
    assert new_version != old_version
    assert update == {"Name": deployment.mwaa_name, "RequirementsS3ObjectVersion": new_version}
    assert any("UPDATING" in line for line in deployment.output)


@pytest.mark.parametrize("final", [
    {"Status": "UPDATE_FAILED"},
    {"Status": "AVAILABLE"},  # MWAA rolled the update back
])  # fmt: skip
def test_a_failed_environment_update_exits_non_zero_with_the_reason(
    deployment: Deployment, final: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    created = first_apply(deployment)
    message = "requirements.txt: no-such-package==1.0 not found"
    reason = {"Status": "FAILED",
              "Error": {"ErrorCode": "INCORRECT_CONFIGURATION", "ErrorMessage": message}}  # fmt: skip
    update_requirements(deployment, created, "no-such-package==1.0", final["Status"], reason)

    assert deployment.run() == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "no-such-package==1.0 not found" in error and "INCORRECT_CONFIGURATION" in error


def test_dry_run_prints_the_plan_and_writes_nothing(deployment: Deployment) -> None:
    not_found(deployment.stub)

    assert deployment.run("--dry-run") == 0
    plan = "\n".join(deployment.output)
    assert f"would s3://{deployment.source_bucket}: create" in plan
    assert f"would iam role totesys-{deployment.env_name}-mwaa-execution: create" in plan
    assert f"would secret {deployment.secrets_prefix}/totesys_db: create" in plan
    assert f"would mwaa environment {deployment.mwaa_name}: create (Airflow 3.0.6)" in plan
    assert deployment.output[-1].endswith("(dry run: nothing written)")
    assert set(deployment.sent) == {"GetEnvironment"}
    clients = deployment.clients
    buckets = {bucket["Name"] for bucket in clients.s3.list_buckets()["Buckets"]}
    assert not any(deployment.env_name in bucket for bucket in buckets)
    with pytest.raises(ClientError):
        clients.iam.get_role(RoleName=f"totesys-{deployment.env_name}-mwaa-execution")
    with pytest.raises(ClientError):
        clients.secretsmanager.describe_secret(SecretId=f"{deployment.secrets_prefix}/totesys_db")


def test_dry_run_after_a_change_names_it_and_uploads_nothing(deployment: Deployment) -> None:
    created = first_apply(deployment)
    requirements = deployment.project / "requirements.txt"
    requirements.write_text(requirements.read_text() + "tenacity==9.1.2\n")
    commit(deployment.project, "tenacity")
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run("--dry-run") == 0
    assert (
        f"would s3://{deployment.source_bucket}/requirements.txt: upload (changed)"
        in deployment.output
    )
    assert (
        f"would mwaa environment {deployment.mwaa_name}: update RequirementsS3ObjectVersion"
        in deployment.output
    )
    assert len(deployment.versions("requirements.txt")) == 1
    assert set(deployment.sent) == {"GetEnvironment"}


def test_a_new_environment_without_its_network_is_refused_before_anything_is_written(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    from deploy.mwaa.cli import main

    not_found(deployment.stub)
    code = main(["--env-name", deployment.env_name, "--project-root", str(deployment.project),
                 "--secrets-prefix", deployment.secrets_prefix],
                clients=deployment.clients, env=SECRET_ENV, say=deployment.output.append)  # fmt: skip
    assert code == 1
    assert "--subnet-ids" in capsys.readouterr().err
    buckets = {bucket["Name"] for bucket in deployment.clients.s3.list_buckets()["Buckets"]}
    assert not any(deployment.env_name in bucket for bucket in buckets)


def test_subnets_of_an_existing_environment_cannot_change(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    created = first_apply(deployment)
    created["NetworkConfiguration"] = {"SubnetIds": ["subnet-other1", "subnet-other2"],
                                       "SecurityGroupIds": [SECURITY_GROUP]}  # fmt: skip
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 1
    assert "subnets of an existing MWAA environment cannot change" in capsys.readouterr().err
    assert "UpdateEnvironment" not in deployment.sent


def test_no_secret_value_reaches_output_logs_or_s3(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    created = first_apply(deployment)
    rotated = dict(SECRET_ENV, SES_SMTP_PASSWORD="S3cr3t-rotated-pw")
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    assert deployment.run(env=rotated) == 0
    assert deployment.output == [
        f"applying totesys-{deployment.env_name} in eu-west-2",
        f"secret {deployment.secrets_prefix}/smtp_default: update (value changed)",
        "made 1 change(s)",
    ]

    captured = capsys.readouterr()
    seen = "\n".join([*deployment.output, captured.out, captured.err, caplog.text])
    s3 = deployment.clients.s3
    for item in s3.list_objects_v2(Bucket=deployment.source_bucket)["Contents"]:
        body = s3.get_object(Bucket=deployment.source_bucket, Key=item["Key"])["Body"].read()
        seen += body.decode("utf-8", errors="replace") if item["Key"] != "plugins.zip" else ""
    for value in (*SECRET_VALUES, "S3cr3t-rotated-pw"):
        assert value not in seen
    stored = deployment.clients.secretsmanager.get_secret_value(
        SecretId=f"{deployment.secrets_prefix}/smtp_default"
    )
    assert json.loads(stored["SecretString"])["password"] == "S3cr3t-rotated-pw"


def test_a_failed_create_exits_non_zero_with_the_reason(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    stub, name = deployment.stub, deployment.mwaa_name
    not_found(stub)
    stub.add_response(
        "create_environment", {"Arn": f"arn:aws:airflow:eu-west-2:123456789012:environment/{name}"}
    )
    stub.add_response("get_environment", {"Environment": {"Name": name, "Status": "CREATING"}})
    error = {"ErrorCode": "VPC_ERROR", "ErrorMessage": "subnets have no route to NAT"}
    failed = {
        "Name": name,
        "Status": "CREATE_FAILED",
        "LastUpdate": {"Status": "FAILED", "Error": error},
    }
    stub.add_response("get_environment", {"Environment": failed})

    assert deployment.run() == 1
    assert capsys.readouterr().err == (
        f"error: create of {name} ended CREATE_FAILED: VPC_ERROR: subnets have no route to NAT\n"
    )


def test_a_new_role_not_yet_visible_to_mwaa_is_retried(deployment: Deployment) -> None:
    stub, name = deployment.stub, deployment.mwaa_name
    not_found(stub)
    stub.add_client_error("create_environment", service_error_code="ValidationException",
                          service_message="Unable to assume the execution role", http_status_code=400)  # fmt: skip
    stub.add_response(
        "create_environment", {"Arn": f"arn:aws:airflow:eu-west-2:123456789012:environment/{name}"}
    )
    stub.add_response("get_environment", {"Environment": {"Name": name, "Status": "CREATING"}})
    stub.add_response("get_environment", {"Environment": {"Name": name, "Status": "AVAILABLE"}})

    assert deployment.run() == 0
    stub.assert_no_pending_responses()
    assert len(deployment.sent["CreateEnvironment"]) == 2
    assert any("not visible to MWAA yet" in line for line in deployment.output)


def test_changed_plugins_pass_their_new_version_and_nothing_else(deployment: Deployment) -> None:
    module = deployment.project / "plugins" / "totesys_task_metrics.py"
    created = first_apply(deployment)
    module.write_text(module.read_text() + "\n# changed\n")
    commit(deployment.project, "a plugin changed")
    expect_update(deployment, created)

    assert deployment.run() == 0
    (update,) = deployment.sent["UpdateEnvironment"]
    assert update == {
        "Name": deployment.mwaa_name,
        "PluginsS3ObjectVersion": deployment.current_version("plugins.zip"),
    }
    assert update["PluginsS3ObjectVersion"] != created["PluginsS3ObjectVersion"]


def test_a_new_security_group_is_the_only_network_update(deployment: Deployment) -> None:
    created = first_apply(deployment)
    created["NetworkConfiguration"] = {"SubnetIds": list(SUBNETS), "SecurityGroupIds": ["sg-0old"]}
    expect_update(deployment, created)

    assert deployment.run() == 0
    (update,) = deployment.sent["UpdateEnvironment"]
    assert update == {
        "Name": deployment.mwaa_name,
        "NetworkConfiguration": {"SecurityGroupIds": [SECURITY_GROUP]},
    }


def test_an_environment_busy_when_apply_starts_is_waited_for(deployment: Deployment) -> None:
    created = first_apply(deployment)
    stub = deployment.stub
    stub.add_response("get_environment", as_get_environment(created, "UPDATING"))
    stub.add_response("get_environment", as_get_environment(created, "UPDATING"))
    stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 0
    stub.assert_no_pending_responses()
    assert "UpdateEnvironment" not in deployment.sent
    assert deployment.output[-1] == "no changes: everything is already as it should be"


def test_a_stale_reading_right_after_an_update_is_not_taken_for_its_result(
    deployment: Deployment,
) -> None:
    created = first_apply(deployment)
    old_failure = {"Status": "FAILED", "CreatedAt": datetime(2026, 1, 1, tzinfo=UTC),
                   "Error": {"ErrorCode": "OLD", "ErrorMessage": "an update months ago"}}  # fmt: skip
    requirements = deployment.project / "requirements.txt"
    requirements.write_text(requirements.read_text() + "tenacity==9.1.2\n")
    commit(deployment.project, "tenacity")
    # MWAA's first answer after update_environment can still describe the previous update
    stale = as_get_environment(created, "AVAILABLE", LastUpdate=old_failure)
    stub = expect_update(deployment, created, last_update={"Status": "SUCCESS"}, stale_first=stale)

    assert deployment.run() == 0
    stub.assert_no_pending_responses()


def test_statements_and_rules_of_other_tooling_survive_and_cause_no_churn(
    deployment: Deployment,
) -> None:
    s3, bucket = deployment.clients.s3, deployment.source_bucket
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    audit = {"Sid": "AuditRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": "s3:GetBucketLocation", "Resource": f"arn:aws:s3:::{bucket}"}  # fmt: skip
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [audit]})
    )
    archive = {"ID": "archive-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
               "Expiration": {"Days": 90}}  # fmt: skip
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [archive]}
    )
    created = first_apply(deployment)

    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["AuditRead", "DenyInsecureTransport"]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(rule["ID"] for rule in rules) == ["archive-logs", "expire-old-versions"]
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    assert deployment.run() == 0
    assert deployment.output[-1] == "no changes: everything is already as it should be"


@pytest.mark.parametrize(("option", "error"), [
    ("core.Parallelism=4", "error: option 'core.Parallelism' must look like section.key, in lower case\n"),
    ("totesys.ingest_schedule=",
     "error: option totesys.ingest_schedule: MWAA takes 1 to 65536 printable ASCII characters\n"),
    ("no-equals-sign", "error: --option 'no-equals-sign' must look like section.key=value\n"),
])  # fmt: skip
def test_a_bad_airflow_option_is_refused_before_anything_is_written(
    deployment: Deployment, option: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deployment.run("--option", option) == 1
    assert capsys.readouterr().err == error
    assert deployment.sent == {}


def test_a_missing_project_file_is_one_line(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    (deployment.project / "requirements.txt").unlink()
    not_found(deployment.stub)
    assert deployment.run() == 1
    error = capsys.readouterr().err
    assert error.startswith("error: No such file or directory: ") and error.endswith(
        "requirements.txt\n"
    )


def test_untracked_files_stay_home_and_are_named(deployment: Deployment) -> None:
    (deployment.project / "etl" / ".env").write_text("TOTESYS_DB_URL=postgresql://u:x@h/db\n")
    (deployment.project / "dags" / "scratch_dag.py").write_text("# not committed\n")
    first_apply_output = deployment.output
    expect_create(deployment)

    assert deployment.run() == 0
    keys = {
        item["Key"]
        for item in deployment.clients.s3.list_objects_v2(Bucket=deployment.source_bucket)[
            "Contents"
        ]
    }
    assert "dags/etl/.env" not in keys and "dags/scratch_dag.py" not in keys
    assert "dags/etl/config.py" in keys
    notes = [line for line in first_apply_output if line.startswith("note:")]
    assert notes == [
        "note: dags/scratch_dag.py is not tracked by git, so it is not shipped",
        "note: etl/.env is not tracked by git, so it is not shipped",
    ]


def test_uncommitted_changes_are_refused_unless_allowed_and_the_commit_is_recorded(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    created = first_apply(deployment)
    s3, bucket = deployment.clients.s3, deployment.source_bucket
    head = git(deployment.project, "rev-parse", "HEAD").strip()
    recorded = s3.get_object(Bucket=bucket, Key="deployed-commit.txt")["Body"].read()
    assert recorded == f"{head}\n".encode()
    loader = deployment.project / "etl" / "load" / "loader.py"
    loader.write_text(loader.read_text() + "\n# edited, not committed\n")
    capsys.readouterr()

    assert deployment.run() == 1
    assert capsys.readouterr().err == (
        "error: etl/load/loader.py has uncommitted changes (1 file(s) in all): commit them, "
        "or pass --allow-dirty to ship the working tree as it is\n"
    )
    assert set(deployment.sent) == set()  # refused before MWAA was even asked

    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))
    assert deployment.run("--allow-dirty") == 0
    assert "note: etl/load/loader.py ships with uncommitted changes (--allow-dirty)" in (
        deployment.output
    )
    recorded = s3.get_object(Bucket=bucket, Key="deployed-commit.txt")["Body"].read()
    assert recorded == f"{head}\nwith uncommitted changes (--allow-dirty)\n".encode()
