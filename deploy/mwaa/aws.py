"""The AWS clients a deployment uses, made in one place so tests can hand in their own
(moto for S3/IAM/Secrets Manager/CloudWatch/SNS, a Stubber-wrapped client for MWAA)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


@dataclass(frozen=True)
class AwsClients:
    s3: Any
    iam: Any
    secretsmanager: Any
    sts: Any
    mwaa: Any
    logs: Any  # CloudWatch Logs: what MWAA's pip install wrote
    cloudwatch: Any  # the dashboard and alarms
    sns: Any  # the alert topic
    kms: Any  # the alert topic's key

    @classmethod
    def for_region(cls, region: str) -> AwsClients:
        """Credentials and endpoints the standard way (profile, env, role; AWS_ENDPOINT_URL)."""
        session = boto3.Session(region_name=region)
        return cls(
            *(
                session.client(name)
                for name in (
                    "s3",
                    "iam",
                    "secretsmanager",
                    "sts",
                    "mwaa",
                    "logs",
                    "cloudwatch",
                    "sns",
                    "kms",
                )
            )
        )


def expect_bucket_owner(s3: Any, account: str) -> None:
    """Every S3 call of this client that can carry ExpectedBucketOwner carries `account`:
    bucket names are predictable, so a bucket someone else created under ours is never read
    from, written to or configured (S3 answers 403 instead)."""

    def add_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ExpectedBucketOwner" in getattr(model.input_shape, "members", {}):
            params.setdefault("ExpectedBucketOwner", account)

    s3.meta.events.register("provide-client-params.s3.*", add_owner, unique_id="expect-owner")


def keep_request_bodies_out_of_logs() -> None:
    """botocore logs whole request parameters at DEBUG, secret values included; a deployment
    never lets those records through, whatever the root logger's level."""
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_not_found(error: ClientError) -> bool:
    return error_code(error) in {
        "404",
        "NoSuchBucket",
        "NoSuchEntity",
        "ResourceNotFoundException",
        "NoSuchLifecycleConfiguration",
        "NoSuchBucketPolicy",
        "NoSuchPublicAccessBlockConfiguration",
        "ServerSideEncryptionConfigurationNotFoundError",
        "NoSuchKey",
        "NotFound",
    }
