"""The three buckets (MWAA source, ingestion, processed), all held to the same rules:
versioned (MWAA requires it on its source bucket; elsewhere it undoes a bad write),
encrypted by default, never public, reachable only over TLS, old versions expired.

Bucket names are predictable, so a name is never trusted alone: every S3 call carries
ExpectedBucketOwner (aws.expect_bucket_owner), a bucket of another account is refused as
"name taken", and one of this account tagged for another project is refused too. The two
data buckets hold the raw extracts (personal data): their policy denies object access to
every principal but the execution role, the deployer and a named break-glass role.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.aws import error_code, is_not_found
from deploy.mwaa.config import PROJECT_TAG, DeployConfig, DeployError
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
DATA_ACCESS_SID = "DataOnlyForPipelineDeployerAndBreakGlass"
LIFECYCLE_ID = "expire-old-versions"
# what reads or changes the data itself; bucket settings stay the deployer's (IAM decides)
DATA_ACTIONS = ["s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject",
                "s3:ListBucket", "s3:ListBucketVersions", "s3:ListMultipartUploadParts",
                "s3:AbortMultipartUpload", "s3:ReplicateObject"]  # fmt: skip


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


def principal_patterns(arn: str) -> list[str]:
    """aws:PrincipalArn patterns for a caller as STS names it. An assumed role is known to
    bucket policies by its role ARN, which may carry a path STS does not show (SSO's
    `aws-reserved/sso.amazonaws.com/`), so a path is allowed."""
    partition_account, _, rest = arn.partition(":assumed-role/")
    if rest:
        base = partition_account.replace(":sts::", ":iam::")
        role = rest.split("/")[0]
        return [f"{base}:role/{role}", f"{base}:role/*/{role}"]
    return [arn.replace(":sts::", ":iam::")]


def data_access_statement(bucket: str, allowed: list[str]) -> dict[str, Any]:
    """Deny data access to anyone else in the account, however wide their IAM policies."""
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Sid": DATA_ACCESS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": DATA_ACTIONS,
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": sorted(set(allowed))}},
    }


def lifecycle_rule(noncurrent_days: int) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_AFTER_DAYS},
    }


def check_bucket(s3: Any, bucket: str, config: DeployConfig) -> bool:
    """Whether the bucket exists, checked before anything is written: refused when another
    account owns the name or a bucket of this account is tagged for another project."""
    exists = _exists(s3, bucket)
    if exists:
        tags = _tags(s3, bucket)
        owner = tags.get(PROJECT_TAG)
        if owner is not None and owner != config.prefix:
            raise DeployError(f"s3://{bucket} belongs to project {owner!r}, not {config.prefix!r}")
    return exists


def ensure_bucket(
    s3: Any,
    bucket: str,
    config: DeployConfig,
    plan: Plan,
    exists: bool,
    data_readers: list[str] | None = None,
) -> None:
    """Create the bucket if absent, then put each setting that differs from the rules. The
    policy statements and lifecycle rule are merged by Sid/ID into what is there, so other
    tooling's statements and rules survive. `exists`: what check_bucket found;
    `data_readers`: for a data bucket, the principals (aws:PrincipalArn patterns) that alone
    may touch its objects."""
    region, noncurrent_days = config.region, config.noncurrent_version_days
    resource = f"s3://{bucket}"
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
    tags = _tags(s3, bucket) if exists else {}
    if tags.get(PROJECT_TAG) != config.prefix:
        tagging = {"TagSet": [{"Key": k, "Value": v}
                              for k, v in {**tags, PROJECT_TAG: config.prefix}.items()]}  # fmt: skip
        plan.change(resource, f"tag {PROJECT_TAG}={config.prefix}", s3.put_bucket_tagging,
                    Bucket=bucket, Tagging=tagging)  # fmt: skip
    statements = _policy_statements(s3, bucket) if exists else []
    ours = [tls_only_statement(bucket)]
    if data_readers is not None:
        ours.append(data_access_statement(bucket, data_readers))
    missing = [statement for statement in ours if statement not in statements]
    if missing:
        for statement in ours:
            statements = _replacing(statements, "Sid", statement)
        policy = {"Version": "2012-10-17", "Statement": statements}
        what = " and ".join(
            "TLS-only" if statement["Sid"] == TLS_SID else "data-access" for statement in missing
        )
        plan.change(resource, f"set the {what} bucket policy statement(s)", s3.put_bucket_policy,
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
    """head_bucket with ExpectedBucketOwner (set on every call): 403 is a bucket another
    account owns (or one this caller may not see), never one to adopt."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if is_not_found(error):
            return False
        if error_code(error) in {"403", "AccessDenied", "Forbidden"}:
            raise DeployError(
                f"s3://{bucket}: name taken (the bucket is another account's, or this caller "
                "may not see it); choose another --prefix"
            ) from None
        raise
    return True


def _tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        found = s3.get_bucket_tagging(Bucket=bucket)
    except ClientError as error:
        if is_not_found(error) or error_code(error) == "NoSuchTagSet":
            return {}
        raise
    return {tag["Key"]: tag["Value"] for tag in found.get("TagSet", [])}


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
