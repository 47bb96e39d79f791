"""The MWAA execution role: every task runs with it, so it may touch exactly the
environment's buckets, log groups, queues and connection secrets, nothing else.

Two statements keep `*` because their actions have no resource to name (IAM cannot scope
`s3:GetAccountPublicAccessBlock` or `cloudwatch:PutMetricData`), and the Celery queues sit
in an AWS-owned account, so their ARN has `*` for the account (as MWAA documents).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from deploy.mwaa.aws import is_not_found
from deploy.mwaa.config import PROJECT_TAG, DeployConfig, DeployError
from deploy.mwaa.monitoring import MWAA_NAMESPACE
from deploy.mwaa.plan import Plan
from deploy.mwaa.secrets import ENVIRONMENT_TAG

POLICY_NAME = "mwaa-execution"
ACTIONS_WITHOUT_RESOURCES = frozenset(
    {"s3:GetAccountPublicAccessBlock", "cloudwatch:PutMetricData"}
)


def environment_arn(config: DeployConfig, account: str) -> str:
    return f"arn:aws:airflow:{config.region}:{account}:environment/{config.mwaa_name}"


def trust_policy(config: DeployConfig, account: str) -> dict[str, Any]:
    """MWAA may assume the role only for this environment of this account: the
    `aws:SourceAccount` and `aws:SourceArn` conditions AWS documents against the confused
    deputy (a service acting for another account's request)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": environment_arn(config, account)},
                },
            }
        ],
    }


def execution_policy(config: DeployConfig, account: str) -> dict[str, Any]:
    region = config.region
    source = f"arn:aws:s3:::{config.source_bucket}"
    data = [f"arn:aws:s3:::{name}" for name in (config.ingestion_bucket, config.processed_bucket)]
    # the buckets' names are predictable: they count only when this account owns them
    own_account = {"StringEquals": {"s3:ResourceAccount": account}}
    log_groups = [
        arn
        for name in config.log_group_names
        for arn in (f"arn:aws:logs:{region}:{account}:log-group:{name}",
                    f"arn:aws:logs:{region}:{account}:log-group:{name}:*")
    ]  # fmt: skip
    statements: list[dict[str, Any]] = [
        {"Sid": "PublishMetrics", "Effect": "Allow", "Action": "airflow:PublishMetrics",
         "Resource": environment_arn(config, account)},
        {"Sid": "NoBucketListing", "Effect": "Deny", "Action": "s3:ListAllMyBuckets",
         "Resource": [source, f"{source}/*"]},
        {"Sid": "ReadDagSource", "Effect": "Allow",
         "Action": ["s3:GetObject*", "s3:GetBucket*", "s3:List*"],
         "Resource": [source, f"{source}/*"], "Condition": own_account},
        {"Sid": "ListDataBuckets", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
         "Resource": data, "Condition": own_account},
        {"Sid": "ReadWriteData", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": [f"{arn}/*" for arn in data], "Condition": own_account},
        {"Sid": "AccountPublicAccessBlock", "Effect": "Allow",
         "Action": "s3:GetAccountPublicAccessBlock", "Resource": "*"},
        {"Sid": "Logs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents",
                    "logs:GetLogEvents", "logs:GetLogRecord", "logs:GetLogGroupFields",
                    "logs:GetQueryResults"],
         "Resource": log_groups},
        {"Sid": "DescribeLogGroups", "Effect": "Allow", "Action": "logs:DescribeLogGroups",
         "Resource": f"arn:aws:logs:{region}:{account}:log-group:*"},
        # PutMetricData has no resource to scope; its namespace is the condition: MWAA's own
        # metrics and this environment's namespace of the pipeline's (etl/ops/metrics.py), so no
        # environment can publish into, and so silence or set off, another's alarms
        {"Sid": "Metrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {
             "cloudwatch:namespace": [MWAA_NAMESPACE, config.metrics_namespace]}}},
        {"Sid": "CeleryQueues", "Effect": "Allow",
         "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:SendMessage"],
         "Resource": f"arn:aws:sqs:{region}:*:airflow-celery-*"},
        {"Sid": "CeleryQueueEncryption", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:Encrypt"],
         "NotResource": f"arn:aws:kms:*:{account}:key/*",
         "Condition": {"StringLike": {"kms:ViaService": [f"sqs.{region}.amazonaws.com"]}}},
        {"Sid": "ConnectionSecrets", "Effect": "Allow",
         "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
         "Resource": f"arn:aws:secretsmanager:{region}:{account}:secret:{config.connections_prefix}/*",
         "Condition": {"StringEquals": {
             f"secretsmanager:ResourceTag/{ENVIRONMENT_TAG}": config.mwaa_name,
             f"secretsmanager:ResourceTag/{PROJECT_TAG}": config.prefix}}},
    ]  # fmt: skip
    return {"Version": "2012-10-17", "Statement": statements}


def current_role(iam: Any, config: DeployConfig) -> dict[str, Any] | None:
    """The execution role as it is, after checking it is this project's and carries nothing
    but our inline policy: refused in one line, before anything is written, otherwise.

    Only the inline policy is reconciled; an attached managed policy or another inline one
    would widen what every task may do without this deployer seeing it, so it is refused
    rather than silently kept (or silently removed from a role someone else changed)."""
    name = config.role_name
    try:
        role: dict[str, Any] = iam.get_role(RoleName=name)["Role"]
    except ClientError as error:
        if not is_not_found(error):
            raise
        return None
    tags = {tag.get("Key"): tag.get("Value") for tag in role.get("Tags", [])}
    if tags.get(PROJECT_TAG) != config.prefix:
        owner = tags.get(PROJECT_TAG)
        whose = f"project {owner!r}" if owner else f"no project (no {PROJECT_TAG} tag)"
        raise DeployError(f"iam role {name} belongs to {whose}, not {config.prefix!r}")
    attached = [
        policy["PolicyArn"]
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        for policy in page.get("AttachedPolicies", [])
    ]
    if attached:
        raise DeployError(
            f"iam role {name} has managed policy {attached[0]} attached; the deployer manages "
            f"only its inline policy {POLICY_NAME}: detach it (the role needs nothing more)"
        )
    others = [
        policy
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name)
        for policy in page.get("PolicyNames", [])
        if policy != POLICY_NAME
    ]
    if others:
        raise DeployError(
            f"iam role {name} has inline policy {others[0]} besides {POLICY_NAME}: delete it "
            "(the role needs nothing more)"
        )
    return role


def ensure_execution_role(
    iam: Any, config: DeployConfig, account: str, plan: Plan, role: dict[str, Any] | None
) -> str:
    """The role's ARN, after creating it or bringing its trust and policy up to date.
    `role`: what current_role found before anything was written."""
    name = config.role_name
    resource = f"iam role {name}"
    arn = f"arn:aws:iam::{account}:role/{name}"
    if role is None:
        plan.change(
            resource,
            "create (trusted by MWAA)",
            iam.create_role,
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy(config, account)),
            Description=f"MWAA execution role of {config.mwaa_name}",
            Tags=[{"Key": PROJECT_TAG, "Value": config.prefix}],
        )
    else:
        arn = role["Arn"]
        if _document(role["AssumeRolePolicyDocument"]) != trust_policy(config, account):
            plan.change(
                resource,
                "reset its trust policy to MWAA for this environment only",
                iam.update_assume_role_policy,
                RoleName=name,
                PolicyDocument=json.dumps(trust_policy(config, account)),
            )
    wanted = execution_policy(config, account)
    if role is None or _inline_policy(iam, name) != wanted:
        plan.change(
            resource,
            f"put least-privilege policy {POLICY_NAME}",
            iam.put_role_policy,
            RoleName=name,
            PolicyName=POLICY_NAME,
            PolicyDocument=json.dumps(wanted),
        )
    return arn


def _inline_policy(iam: Any, role: str) -> dict[str, Any] | None:
    try:
        document = iam.get_role_policy(RoleName=role, PolicyName=POLICY_NAME)["PolicyDocument"]
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return _document(document)


def _document(value: Any) -> dict[str, Any]:
    """botocore decodes policy documents to dicts; an unquoted string is decoded here."""
    if isinstance(value, str):
        decoded: dict[str, Any] = json.loads(unquote(value))
        return decoded
    return dict(value)
