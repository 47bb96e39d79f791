"""Ship the artifacts to the MWAA source bucket by checksum: upload only what changed,
delete DAG-folder files that are gone, and report the object versions MWAA must be told of.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.artifacts import DAGS_PREFIX, Artifact
from deploy.mwaa.aws import is_not_found
from deploy.mwaa.config import DeployError
from deploy.mwaa.plan import Plan

NEW_VERSION = "<new version>"  # what a dry run reports for an object it would upload


def _etag(value: str) -> str:
    return value.strip('"')


def sync_dag_folder(s3: Any, bucket: str, artifacts: Iterable[Artifact], plan: Plan) -> None:
    """MWAA reads the DAG folder itself, so no environment update follows a DAG change."""
    wanted = {artifact.key: artifact for artifact in artifacts}
    present = _listed(s3, bucket)
    for key, artifact in sorted(wanted.items()):
        if present.get(key) != artifact.md5:
            action = "upload (changed)" if key in present else "upload (new)"
            plan.change(
                f"s3://{bucket}/{key}", action, _put, s3=s3, bucket=bucket, artifact=artifact
            )
    for key in sorted(set(present) - set(wanted)):
        plan.change(f"s3://{bucket}/{key}", "delete (removed from dags/)",
                    s3.delete_object, Bucket=bucket, Key=key)  # fmt: skip


def _listed(s3: Any, bucket: str) -> dict[str, str]:
    """Key -> checksum of the DAG folder; empty when the bucket is yet to be made (dry run)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{DAGS_PREFIX}/")
    try:
        return {
            item["Key"]: _etag(item["ETag"]) for page in pages for item in page.get("Contents", [])
        }
    except ClientError as error:
        if is_not_found(error):
            return {}
        raise


def sync_versioned_object(s3: Any, bucket: str, artifact: Artifact, plan: Plan) -> str:
    """Upload if the bytes differ; return the object's version id (the current one if
    unchanged), which MWAA needs for plugins.zip and requirements.txt."""
    try:
        head = s3.head_object(Bucket=bucket, Key=artifact.key)
    except ClientError as error:
        if not is_not_found(error):
            raise
        head = None
    if head is not None and _etag(head["ETag"]) == artifact.md5:
        return str(head["VersionId"])
    action = "upload (changed)" if head is not None else "upload (new)"
    version = plan.change(
        f"s3://{bucket}/{artifact.key}", action, _put, s3=s3, bucket=bucket, artifact=artifact
    )
    return NEW_VERSION if version is None else version


def _put(s3: Any, bucket: str, artifact: Artifact) -> str:
    response = s3.put_object(Bucket=bucket, Key=artifact.key, Body=artifact.body)
    if _etag(response["ETag"]) != artifact.md5:
        raise DeployError(f"s3://{bucket}/{artifact.key}: the stored bytes differ from the upload")
    return str(response.get("VersionId", ""))
