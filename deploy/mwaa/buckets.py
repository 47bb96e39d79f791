"""The three buckets (MWAA source, ingestion, processed), all held to the same rules:
versioned (MWAA requires it on its source bucket; elsewhere it undoes a bad write),
encrypted by default, never public, reachable only over TLS, old versions expired."""

from __future__ import annotations

import json
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


TLS_SID = "DenyInsecureTransport"
LIFECYCLE_ID = "expire-old-versions"


def tls_only_statement(bucket: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def lifecycle_rule(noncurrent_days: int) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_AFTER_DAYS},
    }


def ensure_bucket(s3: Any, bucket: str, region: str, noncurrent_days: int, plan: Plan) -> None:
    """Create the bucket if absent, then put each setting that differs from the rules. The
    policy statement and lifecycle rule are merged by Sid/ID into what is there, so other
    tooling's statements and rules survive."""
    resource = f"s3://{bucket}"
    exists = _exists(s3, bucket)
    if not exists:
        location = {} if region == "us-east-1" else {"LocationConstraint": region}
        plan.change(resource, "create", s3.create_bucket, Bucket=bucket,
                    **({"CreateBucketConfiguration": location} if location else {}))  # fmt: skip
    if not exists or not _versioning_on(s3, bucket):
        plan.change(resource, "turn on versioning", s3.put_bucket_versioning,
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})  # fmt: skip
    if not exists or not _encrypted(s3, bucket):
        plan.change(resource, "set default encryption (SSE-S3)", s3.put_bucket_encryption,
                    Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTION)  # fmt: skip
    if not exists or not _public_access_blocked(s3, bucket):
        plan.change(resource, "block all public access", s3.put_public_access_block,
                    Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)  # fmt: skip
    statements = _policy_statements(s3, bucket) if exists else []
    if tls_only_statement(bucket) not in statements:
        policy = {
            "Version": "2012-10-17",
            "Statement": _replacing(statements, "Sid", tls_only_statement(bucket)),
        }
        plan.change(resource, "set the TLS-only bucket policy statement", s3.put_bucket_policy,
                    Bucket=bucket, Policy=json.dumps(policy))  # fmt: skip
    rules = _lifecycle_rules(s3, bucket) if exists else []
    if not any(_same_rule(rule, lifecycle_rule(noncurrent_days)) for rule in rules):
        merged = {"Rules": _replacing(rules, "ID", lifecycle_rule(noncurrent_days))}
        plan.change(resource, f"expire old versions after {noncurrent_days} days",
                    s3.put_bucket_lifecycle_configuration, Bucket=bucket,
                    LifecycleConfiguration=merged)  # fmt: skip


def _replacing(
    items: list[dict[str, Any]], id_field: str, ours: dict[str, Any]
) -> list[dict[str, Any]]:
    return [item for item in items if item.get(id_field) != ours[id_field]] + [ours]


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
    """SSE-S3 only: under SSE-KMS an ETag is no MD5, and the sync compares by MD5."""
    found = _get(s3.get_bucket_encryption, Bucket=bucket)
    rules = (found or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    return any(rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") == "AES256"
               for rule in rules)  # fmt: skip


def _public_access_blocked(s3: Any, bucket: str) -> bool:
    found = _get(s3.get_public_access_block, Bucket=bucket)
    return (found or {}).get("PublicAccessBlockConfiguration") == PUBLIC_ACCESS_BLOCK


def _policy_statements(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found = _get(s3.get_bucket_policy, Bucket=bucket)
    if found is None:
        return []
    statements = json.loads(found["Policy"]).get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _lifecycle_rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found = _get(s3.get_bucket_lifecycle_configuration, Bucket=bucket)
    return list((found or {}).get("Rules", []))


def _same_rule(rule: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """S3 may hand a rule back reshaped (e.g. its filter); compare what the rule does."""
    return all(rule.get(field) == wanted[field] for field in
               ("ID", "Status", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"))  # fmt: skip
