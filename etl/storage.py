"""The object store adapter: the only place etl talks to S3.

It takes a boto3 S3 client made at the edge (from the environment by the CLI, from the
`aws_default` connection by the DAG), so credentials never pass through etl.
Large objects are streamed with multipart upload: memory holds one part at a time.

A store opened `create_only` never overwrites an object: every PUT (and every completed
multipart upload) carries `If-None-Match: *`, so a writer that lost its lease cannot
change an object another writer has published; the objects that must be replaced (the
stage's state) go through `replace`, conditional on the ETag the writer read. S3 has
honoured both conditions since 2024; the moto server in the venv (5.1) checks both on
PutObject and If-None-Match on CompleteMultipartUpload.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from etl.config import Settings
from etl.errors import (
    DamagedObjectError,
    EtlError,
    LeaseLostError,
    StorageError,
    StorageUnavailableError,
)

PART_SIZE = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB except the last


def s3_client_from_settings(settings: Settings) -> Any:
    """A boto3 client using boto3's own credential chain (env, profile, instance role),
    bound to the expected bucket owner when one is set."""
    client = boto3.client(
        "s3",
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.aws_region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5),
    )
    return expecting_owner(client, settings.expected_bucket_owner)


def expecting_owner(client: Any, account: str) -> Any:
    """Make every call of an S3 client that names a bucket pass `ExpectedBucketOwner`
    (and `ExpectedSourceBucketOwner` for a copy): S3 then refuses, with 403, a bucket of
    the same name that another account owns, so the extracts never land in a bucket
    someone created first under our predictable name. An empty `account`: unchanged."""
    if not account:
        return client

    def add_owner(params: dict[str, Any], model: Any, **_: Any) -> None:
        members = model.input_shape.members if model.input_shape is not None else {}
        for name in ("ExpectedBucketOwner", "ExpectedSourceBucketOwner"):
            if name in members:
                params.setdefault(name, account)

    client.meta.events.register("provide-client-params.s3.*", add_owner)
    return client


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{info.get('Code', 'error')}: {info.get('Message', '')}".strip()
    return str(error).splitlines()[0] if str(error) else type(error).__name__


_CONFIGURATION_ERRORS = (
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
_BUSY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
               "ServiceUnavailable", "RequestTimeTooSkewed"}  # fmt: skip


def is_transient(error: BaseException) -> bool:
    """An S3 failure that retrying later can cure: 5xx, throttling, timeouts, a connection
    refused or reset. Missing buckets, denied access and bad credentials are not."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or info.get("Code") in _BUSY_CODES
    return not isinstance(error, _CONFIGURATION_ERRORS)  # network errors and broken streams


def _precondition_failed(error: BaseException) -> bool:
    if not isinstance(error, ClientError):
        return False
    info = error.response.get("Error", {})
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return info.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412


@dataclass(frozen=True)
class WrittenObject:
    key: str
    bytes: int
    sha256: str


class ObjectStore:
    """One bucket; `create_only`: no write may replace an existing object (see above)."""

    def __init__(self, client: Any, bucket: str, create_only: bool = False) -> None:
        self.client = client
        self.bucket = bucket
        self.create_only = create_only
        # create_only: objects this writer may replace, each only in the version (ETag) it
        # saw: leftovers of a dead attempt, replaced instead of deleted first
        self.replaceable: dict[str, str] = {}

    def write_condition(self, key: str) -> dict[str, str]:
        """The precondition of a write of `key` (boto3 parameters); the key stops being
        replaceable once written."""
        if not self.create_only:
            return {}
        etag = self.replaceable.pop(key, None)
        return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}

    def _fail(self, action: str, key: str, error: BaseException) -> EtlError:
        if _precondition_failed(error):
            # someone else published this object (or the state) meanwhile: we lost the lease
            return LeaseLostError(
                f"not writing s3://{self.bucket}/{key}: another process wrote it first"
                " (this process lost its lease)"
            )
        kind = StorageUnavailableError if is_transient(error) else StorageError
        return kind(f"cannot {action} s3://{self.bucket}/{key}: {_describe(error)}")

    def put_bytes(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> WrittenObject:
        condition = self.write_condition(key)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **condition
            )
        except (BotoCoreError, ClientError) as error:
            raise self._fail("write", key, error) from error
        return WrittenObject(key, len(body), hashlib.sha256(body).hexdigest())

    def replace_json(self, key: str, document: Any, etag: str | None) -> str:
        """Write `document` over the object only if it is still the version whose ETag was
        `etag` (None: only if there is still no object); returns the new ETag. A writer
        that lost its lease fails here (LeaseLostError) instead of overwriting the state
        its successor wrote."""
        body = json.dumps(document, indent=1, sort_keys=True).encode()
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            written = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **condition
            )
        except (BotoCoreError, ClientError) as error:
            raise self._fail("write", key, error) from error
        return str(written["ETag"])

    def put_json(self, key: str, document: Any) -> WrittenObject:
        body = json.dumps(document, indent=1, sort_keys=True).encode()
        return self.put_bytes(key, body, "application/json")

    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        reader = self.open(key)
        if reader is None:
            return None
        with reader:
            return reader.read()

    def open(self, key: str) -> ObjectReader | None:
        """A stream of the object's bytes that hashes as it is read, or None when absent:
        for objects too large to hold in memory."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail("read", key, error) from error
        except BotoCoreError as error:
            raise self._fail("read", key, error) from error
        return ObjectReader(self, key, response["Body"], str(response["ETag"]))

    def get_json(self, key: str) -> Any | None:
        """The parsed document, None when there is no object; a damaged one (not JSON, cut
        short) is refused in one line naming it."""
        return self.get_json_version(key)[0]

    def get_json_version(self, key: str) -> tuple[Any | None, str | None]:
        """(the parsed document, its ETag), (None, None) when there is no object: one GET
        gives both the document and the version a `replace_json` of it is conditional on,
        so no HEAD is needed first (the conditional write itself refuses a newer version)."""
        reader = self.open(key)
        if reader is None:
            return None, None
        with reader:
            body = reader.readall()
        return self._parse_json(key, body), reader.etag

    def _parse_json(self, key: str, body: bytes) -> Any:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise self.damaged(key, "not UTF-8 text, so not a JSON document") from None
        try:
            return json.loads(text)
        except ValueError as error:  # JSONDecodeError
            raise self.damaged(key, f"not valid JSON ({str(error).splitlines()[0]})") from None

    def damaged(self, key: str, why: str) -> DamagedObjectError:
        return DamagedObjectError(
            f"s3://{self.bucket}/{key} is damaged: {why}; `python -m etl doctor` names the"
            " repair (`--repair` rebuilds what the pipeline derived)"
        )

    def keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        """Keys under `prefix` in lexicographic order, after `start_after`."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after)
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"]
        except (BotoCoreError, ClientError) as error:
            raise self._fail("list", prefix, error) from error

    def versions(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, str]]:
        """(key, ETag) under `prefix` in lexicographic order, after `start_after`."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after)
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"], str(item["ETag"])
        except (BotoCoreError, ClientError) as error:
            raise self._fail("list", prefix, error) from error

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            raise self._fail("delete", key, error) from error

    def check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            kind = StorageUnavailableError if is_transient(error) else StorageError
            raise kind(f"bucket s3://{self.bucket} is not usable: {_describe(error)}") from error

    def writer(self, key: str, content_type: str) -> StreamingWriter:
        return StreamingWriter(self, key, content_type)


class ObjectReader(io.RawIOBase):
    """A readable S3 object body; `sha256` is the digest of what has been read so far,
    `etag` the version being read."""

    def __init__(self, store: ObjectStore, key: str, body: Any, etag: str) -> None:
        self.store = store
        self.key = key
        self.etag = etag
        self._body = body
        self._digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readall(self) -> bytes:
        """The rest of the body in one read (RawIOBase would loop over small reads)."""
        try:
            data: bytes = self._body.read()
        except Exception as error:  # botocore and urllib3 both raise while streaming
            raise self.store._fail("read", self.key, error) from error
        self._digest.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except Exception as error:  # botocore and urllib3 both raise while streaming
            raise self.store._fail("read", self.key, error) from error
        count = len(data)
        buffer[:count] = data
        self._digest.update(data)
        self.size += count
        return count

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        self._body.close()
        super().close()


class StreamingWriter:
    """Write a large object in parts; it becomes visible only when complete.

    Small objects (under one part) are a single PUT. On error the multipart upload is
    aborted, so no partial object is ever visible.
    """

    def __init__(self, store: ObjectStore, key: str, content_type: str) -> None:
        self.store = store
        self.key = key
        self.content_type = content_type
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.result: WrittenObject | None = None

    def write(self, data: bytes | memoryview) -> None:
        self._buffer += data
        self._digest.update(data)
        self._size += len(data)
        if len(self._buffer) >= PART_SIZE:
            self._upload_part(bytes(self._buffer[:PART_SIZE]))
            del self._buffer[:PART_SIZE]

    def _upload_part(self, body: bytes) -> None:
        client, bucket = self.store.client, self.store.bucket
        try:
            if self._upload_id is None:
                created = client.create_multipart_upload(
                    Bucket=bucket, Key=self.key, ContentType=self.content_type
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            part = client.upload_part(
                Bucket=bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
            )
            self._parts.append({"PartNumber": number, "ETag": part["ETag"]})
        except (BotoCoreError, ClientError) as error:
            raise self.store._fail("upload part of", self.key, error) from error

    def close(self) -> WrittenObject:
        if self._upload_id is None:
            self.store.put_bytes(self.key, bytes(self._buffer), self.content_type)
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            try:
                self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                    **self.store.write_condition(self.key),
                )
            except (BotoCoreError, ClientError) as error:
                raise self.store._fail("complete", self.key, error) from error
        self._buffer.clear()
        self.result = WrittenObject(self.key, self._size, self._digest.hexdigest())
        return self.result

    def abort(self) -> None:
        if self._upload_id is not None:
            # best effort: a bucket lifecycle rule removes uploads left incomplete
            with contextlib.suppress(BotoCoreError, ClientError):
                self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.key, UploadId=self._upload_id
                )
        self._buffer.clear()

    def __enter__(self) -> StreamingWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
