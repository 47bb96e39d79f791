"""The execution role allows exactly what MWAA and the pipeline need."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from deploy.mwaa.config import DeployConfig
from deploy.mwaa.role import execution_policy, trust_policy
from tests.conftest import REPO_ROOT

ACCOUNT = "123456789012"
CONFIG = DeployConfig("prod", region="eu-west-2")


def _statements() -> list[dict[str, Any]]:
    return list(execution_policy(CONFIG, ACCOUNT)["Statement"])


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_only_actions_iam_cannot_scope_have_a_wildcard_resource() -> None:
    wildcard = {
        action
        for statement in _statements()
        if "*" in _as_list(statement.get("Resource", []))
        for action in _as_list(statement["Action"])
    }
    assert wildcard == {"s3:GetAccountPublicAccessBlock", "cloudwatch:PutMetricData"}


def test_s3_access_is_limited_to_the_three_named_buckets() -> None:
    buckets = {"airflow-totesys-prod-source", "totesys-prod-ingestion", "totesys-prod-processed"}
    allowed = {f"arn:aws:s3:::{name}" for name in buckets} | {
        f"arn:aws:s3:::{name}/*" for name in buckets
    }
    for statement in _statements():
        resources = _as_list(statement.get("Resource", []))
        if any(
            action.startswith("s3:") for action in _as_list(statement["Action"])
        ) and resources != ["*"]:
            assert set(resources) <= allowed, statement["Sid"]


def test_writes_go_to_the_data_buckets_only_and_the_source_bucket_is_read_only() -> None:
    writes = [s for s in _statements() if "s3:PutObject" in _as_list(s["Action"])]
    (statement,) = writes
    assert set(statement["Resource"]) == {
        "arn:aws:s3:::totesys-prod-ingestion/*",
        "arn:aws:s3:::totesys-prod-processed/*",
    }
    source = next(s for s in _statements() if s["Sid"] == "ReadDagSource")
    assert not [a for a in source["Action"] if a.startswith(("s3:Put", "s3:Delete"))]


def test_secrets_logs_and_metrics_are_named() -> None:
    by_sid = {statement["Sid"]: statement for statement in _statements()}
    assert by_sid["ConnectionSecrets"]["Resource"] == (
        f"arn:aws:secretsmanager:eu-west-2:{ACCOUNT}:secret:airflow/totesys-prod/connections/*"
    )
    assert by_sid["ConnectionSecrets"]["Condition"] == {
        "StringEquals": {
            "secretsmanager:ResourceTag/mwaa-environment": "totesys-prod",
            "secretsmanager:ResourceTag/project": "totesys",
        }
    }
    # named exactly: a pattern airflow-totesys-prod-* would match environment totesys-prod-2
    groups = {f"airflow-totesys-prod-{kind}"
              for kind in ("DAGProcessing", "Scheduler", "Task", "WebServer", "Worker")}  # fmt: skip
    prefix = f"arn:aws:logs:eu-west-2:{ACCOUNT}:log-group:"
    assert set(by_sid["Logs"]["Resource"]) == {
        f"{prefix}{group}{tail}" for group in groups for tail in ("", ":*")
    }
    assert not [arn for arn in by_sid["Logs"]["Resource"] if "-*" in arn]
    assert (
        by_sid["PublishMetrics"]["Resource"]
        == f"arn:aws:airflow:eu-west-2:{ACCOUNT}:environment/totesys-prod"
    )
    assert by_sid["PublishMetrics"]["Action"] == "airflow:PublishMetrics"
    # PutMetricData has no resource: only MWAA's own namespace and this environment's
    assert by_sid["Metrics"]["Action"] == "cloudwatch:PutMetricData"
    assert by_sid["Metrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": ["AmazonMWAA", "Totesys/Pipeline/totesys-prod"]}
    }


def test_s3_statements_hold_only_for_buckets_of_this_account() -> None:
    for statement in _statements():
        actions = _as_list(statement["Action"])
        if statement["Effect"] == "Allow" and any(a.startswith("s3:") for a in actions):
            if actions == ["s3:GetAccountPublicAccessBlock"]:
                continue  # an account-level action: no bucket to own
            assert statement["Condition"] == {"StringEquals": {"s3:ResourceAccount": ACCOUNT}}, (
                statement["Sid"]
            )


# every S3 call the pipeline makes -> (IAM action, whether it acts on an object or the bucket)
PIPELINE_S3_CALLS = {
    "put_object": ("s3:PutObject", "object"),
    "create_multipart_upload": ("s3:PutObject", "object"),
    "upload_part": ("s3:PutObject", "object"),
    "complete_multipart_upload": ("s3:PutObject", "object"),
    "abort_multipart_upload": ("s3:AbortMultipartUpload", "object"),
    "get_object": ("s3:GetObject", "object"),
    "head_object": ("s3:GetObject", "object"),  # HeadObject is authorised as GetObject
    "copy_object": ("s3:PutObject", "object"),  # and s3:GetObject on the source, above
    "delete_object": ("s3:DeleteObject", "object"),
    "head_bucket": ("s3:ListBucket", "bucket"),
    "get_paginator": ("s3:ListBucket", "bucket"),  # list_objects_v2
}


def test_every_s3_call_of_the_pipeline_is_allowed_on_both_data_buckets() -> None:
    used = set()
    for path in (REPO_ROOT / "etl").rglob("*.py"):
        used |= set(re.findall(r"client\.([a-z_0-9]+)\(", path.read_text()))
    assert used and used <= set(PIPELINE_S3_CALLS), (
        f"unmapped S3 calls: {used - set(PIPELINE_S3_CALLS)}"
    )
    for call in used:
        action, kind = PIPELINE_S3_CALLS[call]
        for bucket in ("totesys-prod-ingestion", "totesys-prod-processed"):
            resource = f"arn:aws:s3:::{bucket}" + ("/some/key.csv" if kind == "object" else "")
            assert _allowed(action, resource), (call, bucket)
    assert not _allowed("s3:PutObject", "arn:aws:s3:::airflow-totesys-prod-source/dags/x.py")


def _allowed(action: str, resource: str) -> bool:
    """IAM's evaluation for this identity policy: an explicit Deny wins, else any Allow."""
    verdicts = [
        statement["Effect"]
        for statement in _statements()
        if any(fnmatch.fnmatchcase(action, pattern) for pattern in _as_list(statement["Action"]))
        and "Resource" in statement
        and any(
            fnmatch.fnmatchcase(resource, pattern) for pattern in _as_list(statement["Resource"])
        )
    ]
    return "Allow" in verdicts and "Deny" not in verdicts


def test_only_mwaa_acting_for_this_environment_of_this_account_may_assume_the_role() -> None:
    (statement,) = trust_policy(CONFIG, ACCOUNT)["Statement"]
    assert statement["Principal"] == {
        "Service": ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:airflow:eu-west-2:{ACCOUNT}:environment/totesys-prod"
        },
    }
