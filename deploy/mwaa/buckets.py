"""The three buckets (MWAA source, ingestion, processed), all held to the same rules:
versioned (MWAA requires it on its source bucket; elsewhere it undoes a bad write),
encrypted by default, never public, reachable only over TLS, old versions expired."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.aws import is_not_found
from deploy.mwaa.plan import Plan

ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ABORT_UPLOADS_AFTER_DAYS = 7


def tls_only_policy(bucket: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def lifecycle(noncurrent_days: int) -> dict[str, Any]:
    return {
        "Rules": [
            {
                "ID": "expire-old-versions",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_AFTER_DAYS},
            }
        ]
    }


def ensure_bucket(s3: Any, bucket: str, region: str, noncurrent_days: int, plan: Plan) -> None:
    """Create the bucket if absent, then put each setting that differs from the rules."""
    resource = f"s3://{bucket}"
    exists = _exists(s3, bucket)
    if not exists:
        location = {} if region == "us-east-1" else {"LocationConstraint": region}
        plan.change(resource, "create", s3.create_bucket, Bucket=bucket,
                    **({"CreateBucketConfiguration": location} if location else {}))  # fmt: skip
    settings: list[tuple[str, Callable[[Any, str], bool], Callable[..., Any], dict[str, Any]]] = [
        ("turn on versioning", _versioning_on, s3.put_bucket_versioning,
         {"VersioningConfiguration": {"Status": "Enabled"}}),
        ("set default encryption (SSE-S3)", _encrypted, s3.put_bucket_encryption,
         {"ServerSideEncryptionConfiguration": ENCRYPTION}),
        ("block all public access", _public_access_blocked, s3.put_public_access_block,
         {"PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK}),
        ("set the TLS-only bucket policy", _tls_only, s3.put_bucket_policy,
         {"Policy": json.dumps(tls_only_policy(bucket))}),
        (f"expire old versions after {noncurrent_days} days", _expires_old_versions(noncurrent_days),
         s3.put_bucket_lifecycle_configuration,
         {"LifecycleConfiguration": lifecycle(noncurrent_days)}),
    ]  # fmt: skip
    for action, is_set, put, arguments in settings:
        if not exists or not is_set(s3, bucket):
            plan.change(resource, action, put, Bucket=bucket, **arguments)


def _exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if is_not_found(error):
            return False
        raise
    return True


def _get(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    """A bucket setting, or None where it was never set."""
    try:
        response: dict[str, Any] = call(**kwargs)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return response


def _versioning_on(s3: Any, bucket: str) -> bool:
    return bool(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled")


def _encrypted(s3: Any, bucket: str) -> bool:
    found = _get(s3.get_bucket_encryption, Bucket=bucket)
    rules = (found or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    return any(
        rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        in {"AES256", "aws:kms"}
        for rule in rules
    )


def _public_access_blocked(s3: Any, bucket: str) -> bool:
    found = _get(s3.get_public_access_block, Bucket=bucket)
    return (found or {}).get("PublicAccessBlockConfiguration") == PUBLIC_ACCESS_BLOCK


def _tls_only(s3: Any, bucket: str) -> bool:
    found = _get(s3.get_bucket_policy, Bucket=bucket)
    return found is not None and json.loads(found["Policy"]) == tls_only_policy(bucket)


def _expires_old_versions(days: int) -> Callable[[Any, str], bool]:
    def check(s3: Any, bucket: str) -> bool:
        found = _get(s3.get_bucket_lifecycle_configuration, Bucket=bucket)
        wanted = lifecycle(days)["Rules"][0]
        return any(
            rule.get("Status") == "Enabled"
            and rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == days
            and rule.get("AbortIncompleteMultipartUpload")
            == wanted["AbortIncompleteMultipartUpload"]
            for rule in (found or {}).get("Rules", [])
        )

    return check
