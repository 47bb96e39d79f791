"""A second project deploying the same environment name, and a second environment of the
same project, each reach only what is theirs: their own names throughout, and anything
tagged for someone else refused in one line before the first write."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from tests.deploy.mwaa.conftest import (
    SECRET_ENV,
    Deployment,
    as_get_environment,
    expect_create,
    not_found,
)
from tests.deploy.mwaa.test_apply import first_apply

ACCOUNT = "123456789012"  # moto's


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _secret_version(deployment: Deployment) -> str:
    return str(
        deployment.clients.secretsmanager.get_secret_value(
            SecretId=f"{deployment.secrets_prefix}/totesys_db"
        )["VersionId"]
    )


def _names_of(deployment: Deployment, prefix: str) -> set[str]:
    """Buckets, secrets and roles of project `prefix` for this env name."""
    stem = f"{prefix}-{deployment.env_name}"
    clients = deployment.clients
    found = {b["Name"] for b in clients.s3.list_buckets()["Buckets"] if stem in b["Name"]}
    found |= {s["Name"] for s in clients.secretsmanager.list_secrets()["SecretList"]
              if stem in s["Name"]}  # fmt: skip
    found |= {r["RoleName"] for r in clients.iam.list_roles()["Roles"] if stem in r["RoleName"]}
    return found


def test_same_env_name_under_another_prefix_is_another_environment(
    deployment: Deployment,
) -> None:
    first_apply(deployment)
    env = deployment.env_name
    not_found(deployment.stub)  # MWAA has no environment other-<env>

    assert deployment.run("--prefix", "other", "--dry-run") == 0
    plan = [line for line in deployment.output if line.startswith("would ")][:-1]  # summary
    assert plan and not [line for line in plan if f"other-{env}" not in line]
    assert not [line for line in plan if "update" in line or f"totesys-{env}" in line]
    assert f"would secret airflow/other-{env}/connections/totesys_db: create" in plan
    assert f"would mwaa environment other-{env}: create (Airflow 3.0.6)" in plan
    (asked,) = deployment.sent["GetEnvironment"]
    assert asked == {"Name": f"other-{env}"}


def test_another_project_pointed_at_our_secrets_is_refused_before_any_write(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    first_apply(deployment)
    before = _secret_version(deployment)
    not_found(deployment.stub)
    capsys.readouterr()

    code = deployment.run("--prefix", "other", "--secrets-prefix", deployment.secrets_prefix)
    assert code == 1
    assert _one_line(capsys.readouterr().err) == (
        f"error: secret {deployment.secrets_prefix}/totesys_db belongs to project 'totesys', "
        "not 'other': give each project its own --secrets-prefix, or tag the secret "
        "project=other if it is this project's\n"
    )
    assert _secret_version(deployment) == before
    assert _names_of(deployment, "other") == set()


def test_an_environment_of_another_project_is_refused_before_any_write(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """`a-b` + `c` and `a` + `b-c` meet at `a-b-c`: the environment's project tag decides."""
    created: dict[str, Any] = {
        "Name": deployment.mwaa_name, "ExecutionRoleArn": "arn:aws:iam::1:role/theirs",
        "SourceBucketArn": "arn:aws:s3:::theirs", "DagS3Path": "dags",
        "NetworkConfiguration": {"SubnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"]},
        "LoggingConfiguration": {}, "Tags": {"project": "someone-else"},
    }  # fmt: skip
    deployment.stub.add_response("get_environment", as_get_environment(created, "AVAILABLE"))

    assert deployment.run() == 1
    assert _one_line(capsys.readouterr().err) == (
        f"error: mwaa environment {deployment.mwaa_name} belongs to project 'someone-else', "
        "not 'totesys': choose another --prefix or --env-name\n"
    )
    assert set(deployment.sent) == {"GetEnvironment"}
    assert _names_of(deployment, "totesys") == set()


def test_a_second_environment_cannot_reach_the_first_ones_secrets_logs_or_metrics(
    deployment: Deployment,
) -> None:
    first_apply(deployment)
    other = deployment.another_environment()
    expect_create(other)
    assert other.run() == 0
    iam = deployment.clients.iam
    document = iam.get_role_policy(
        RoleName=f"totesys-{other.env_name}-mwaa-execution", PolicyName="mwaa-execution"
    )["PolicyDocument"]
    by_sid = {statement["Sid"]: statement for statement in document["Statement"]}

    first_secret = deployment.clients.secretsmanager.describe_secret(
        SecretId=f"{deployment.secrets_prefix}/totesys_db"
    )["ARN"]
    assert not fnmatch.fnmatchcase(first_secret, by_sid["ConnectionSecrets"]["Resource"])
    tags = by_sid["ConnectionSecrets"]["Condition"]["StringEquals"]
    assert tags["secretsmanager:ResourceTag/mwaa-environment"] == other.mwaa_name
    first_group = f"arn:aws:logs:eu-west-2:{ACCOUNT}:log-group:airflow-{deployment.mwaa_name}-Task"
    assert not any(fnmatch.fnmatchcase(first_group, p) for p in by_sid["Logs"]["Resource"])
    namespaces = by_sid["Metrics"]["Condition"]["StringEquals"]["cloudwatch:namespace"]
    assert f"Totesys/Pipeline/{deployment.mwaa_name}" not in namespaces
    for sid in ("ReadWriteData", "ListDataBuckets"):
        resources = json.dumps(by_sid[sid]["Resource"])
        assert deployment.mwaa_name not in resources and other.mwaa_name in resources
    # and the first environment's data buckets deny the second one's role
    policy = json.loads(
        deployment.clients.s3.get_bucket_policy(Bucket=f"totesys-{deployment.env_name}-ingestion")[
            "Policy"
        ]
    )
    (guard,) = [s for s in policy["Statement"] if s["Sid"].startswith("DataOnly")]
    other_role = f"arn:aws:iam::{ACCOUNT}:role/totesys-{other.env_name}-mwaa-execution"
    allowed = guard["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert not any(fnmatch.fnmatchcase(other_role, pattern) for pattern in allowed)


def _answer_403_for(deployment: Deployment, bucket: str, seen: list[str]) -> None:
    """S3 as it answers head_bucket on a bucket another account owns (moto has one account):
    403. The owner we expect must have been asked for."""

    def handler(params: dict[str, Any], **_: Any) -> Any:
        if not str(params.get("url", "")).rstrip("/").endswith(f"/{bucket}"):
            return None
        seen.append(params["headers"].get("x-amz-expected-bucket-owner", ""))
        parsed = {"Error": {"Code": "403", "Message": "Forbidden"},
                  "ResponseMetadata": {"HTTPStatusCode": 403}}  # fmt: skip
        return AWSResponse(f"https://{bucket}.s3.amazonaws.com/", 403, {}, None), parsed

    deployment.clients.s3.meta.events.register("before-call.s3.HeadBucket", handler)


def test_a_bucket_another_account_owns_is_refused_as_name_taken(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []
    bucket = f"totesys-{deployment.env_name}-processed"
    _answer_403_for(deployment, bucket, seen)
    not_found(deployment.stub)

    assert deployment.run() == 1
    assert _one_line(capsys.readouterr().err) == (
        f"error: s3://{bucket}: name taken (the bucket is another account's, or this caller "
        "may not see it); choose another --prefix\n"
    )
    assert seen == [ACCOUNT]
    assert _names_of(deployment, "totesys") == set()  # not even the secrets


def test_a_bucket_of_this_account_tagged_for_another_project_is_refused(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, bucket = deployment.clients.s3, f"totesys-{deployment.env_name}-ingestion"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "project", "Value": "x"}]})
    not_found(deployment.stub)

    assert deployment.run(env=SECRET_ENV) == 1
    assert _one_line(capsys.readouterr().err) == (
        f"error: s3://{bucket} belongs to project 'x', not 'totesys'\n"
    )
    assert _names_of(deployment, "totesys") == {bucket}


def test_every_s3_call_of_the_deployer_names_the_expected_owner(deployment: Deployment) -> None:
    calls: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params["headers"].get("x-amz-expected-bucket-owner", "")))

    deployment.clients.s3.meta.events.register("before-call.s3", record)
    first_apply(deployment)

    # CreateBucket has no such parameter: the bucket is new, and ours once it answers
    checked = [(name, owner) for name, owner in calls if name != "CreateBucket"]
    assert {name for name, _ in checked} >= {"HeadBucket", "PutObject", "ListObjectsV2",
                                              "PutBucketPolicy", "HeadObject"}  # fmt: skip
    assert {owner for _, owner in checked} == {ACCOUNT}


@pytest.mark.parametrize("command", [("trigger",), ("unpause",), ("status",),
                                     ("backfill", "--from", "2026-11-27", "--to", "2026-11-28")])  # fmt: skip
def test_commands_on_an_environment_of_another_project_are_refused(
    deployment: Deployment, command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.stub.add_response("get_environment", {"Environment": {
        "Name": deployment.mwaa_name, "Status": "AVAILABLE", "Tags": {"project": "someone-else"}}})  # fmt: skip

    assert deployment.run(*command) == 1
    assert _one_line(capsys.readouterr().err) == (
        f"error: mwaa environment {deployment.mwaa_name} belongs to project 'someone-else', "
        "not 'totesys': choose another --prefix or --env-name\n"
    )
    assert set(deployment.sent) == {"GetEnvironment"}  # no REST call reached it
