"""Streaming writes through moto's S3 server: multipart for big objects, nothing partial."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devstack.processes import free_port
from devstack.stack import MOTO_CREDENTIALS, StackEndpoints
from etl.config import Settings
from etl.errors import (
    EXIT_TERMINAL,
    EXIT_TRANSIENT,
    LeaseLostError,
    StorageError,
    StorageUnavailableError,
    exit_code,
)
from etl.storage import PART_SIZE, ObjectStore, expecting_owner, s3_client_from_settings


def test_large_object_is_uploaded_in_parts_and_reassembled(
    s3: Any, new_bucket: Callable[[str], str]
) -> None:
    store = ObjectStore(s3, new_bucket("storage"))
    data = os.urandom(PART_SIZE * 2 + 12345)
    with store.writer("big.bin", "application/octet-stream") as writer:
        for offset in range(0, len(data), 65536):
            writer.write(data[offset : offset + 65536])
        assert len(writer._parts) == 2, "two full parts went out before close"

    assert writer.result is not None
    assert writer.result.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes("big.bin") == data


def test_failed_stream_leaves_no_object(s3: Any, new_bucket: Callable[[str], str]) -> None:
    store = ObjectStore(s3, new_bucket("storage"))
    with (
        pytest.raises(RuntimeError, match="source went away"),
        store.writer("half.bin", "x") as writer,
    ):
        writer.write(os.urandom(PART_SIZE + 1))
        raise RuntimeError("source went away")

    assert store.get_bytes("half.bin") is None
    assert s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_missing_bucket_is_a_clear_error(s3: Any) -> None:
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-here/k: NoSuchBucket"):
        ObjectStore(s3, "no-such-bucket-here").put_bytes("k", b"x")


def test_a_create_only_store_never_replaces_an_object(
    s3: Any, new_bucket: Callable[[str], str]
) -> None:
    bucket = new_bucket("storage")
    ObjectStore(s3, bucket).put_bytes("small", b"first")
    # one PUT: moto refuses a conditional multipart completion only over a non-multipart
    # object (Amazon S3 over any)
    ObjectStore(s3, bucket).put_bytes("big", os.urandom(PART_SIZE + 1))
    before = ObjectStore(s3, bucket).get_bytes("big")
    store = ObjectStore(s3, bucket, create_only=True)

    with pytest.raises(LeaseLostError, match=r"not writing s3://[^/]+/small: another process"):
        store.put_bytes("small", b"second")
    with (
        pytest.raises(LeaseLostError, match=r"not writing s3://[^/]+/big: another process"),
        store.writer("big", "x") as writer,
    ):
        writer.write(os.urandom(PART_SIZE + 1))  # multipart: refused at completion

    assert store.get_bytes("small") == b"first"
    assert store.get_bytes("big") == before
    store.put_bytes("new", b"created")
    assert store.get_bytes("new") == b"created"


def test_replace_is_conditional_on_the_version_read(
    s3: Any, new_bucket: Callable[[str], str]
) -> None:
    store = ObjectStore(s3, new_bucket("storage"), create_only=True)
    assert store.get_json_version("state.json") == (None, None)
    first = store.replace_json("state.json", {"n": 1}, None)
    with pytest.raises(LeaseLostError):
        store.replace_json("state.json", {"n": 0}, None)  # someone created it meanwhile
    second = store.replace_json("state.json", {"n": 2}, first)
    with pytest.raises(LeaseLostError):
        store.replace_json("state.json", {"n": 3}, first)  # a late writer's stale version

    assert store.get_json_version("state.json") == ({"n": 2}, second)


def test_one_get_gives_the_document_and_the_version_its_replace_is_conditional_on(
    s3: Any, new_bucket: Callable[[str], str]
) -> None:
    """No HEAD before a conditional write: the ETag of the GET is the version replaced,
    and a write by anyone else since is refused by the write itself."""
    store = ObjectStore(s3, new_bucket("storage"), create_only=True)
    assert store.get_json_version("state.json") == (None, None)
    first = store.replace_json("state.json", {"n": 1}, None)

    document, etag = store.get_json_version("state.json")
    assert (document, etag) == ({"n": 1}, first)
    second = store.replace_json("state.json", {"n": 2}, etag)
    ObjectStore(s3, store.bucket).put_json("state.json", {"n": 3})  # a late writer's
    with pytest.raises(LeaseLostError, match="another process wrote it first"):
        store.replace_json("state.json", {"n": 4}, second)

    assert store.get_json("state.json") == {"n": 3}


def test_errors_say_whether_retrying_can_help(s3: Any) -> None:
    missing = ObjectStore(s3, "no-such-bucket-here")
    with pytest.raises(StorageError) as terminal:
        missing.put_bytes("k", b"x")
    down = ObjectStore(
        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{free_port('127.0.0.1')}",
            region_name="eu-west-2",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2),
        ),
        "bucket",
    )
    with pytest.raises(StorageUnavailableError) as transient:
        down.put_bytes("k", b"x")

    assert not terminal.value.transient and exit_code(terminal.value) == EXIT_TERMINAL
    assert transient.value.transient and exit_code(transient.value) == EXIT_TRANSIENT


def test_a_leftover_is_replaced_only_in_the_version_that_was_seen(
    s3: Any, new_bucket: Callable[[str], str]
) -> None:
    bucket = new_bucket("storage")
    ObjectStore(s3, bucket).put_bytes("left", b"from a dead attempt")
    [(key, seen)] = list(ObjectStore(s3, bucket).versions("left"))
    successor, late = (ObjectStore(s3, bucket, create_only=True) for _ in range(2))
    successor.replaceable[key] = seen
    late.replaceable[key] = seen

    successor.put_bytes(key, b"the successor's")
    with pytest.raises(LeaseLostError):
        late.put_bytes(key, b"a late writer's")

    assert successor.get_bytes(key) == b"the successor's"
    assert successor.replaceable == {}, "a key is replaceable once"


def test_every_bucket_call_names_the_expected_owner(
    stack: StackEndpoints, new_bucket: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 refuses a call whose ExpectedBucketOwner is not the bucket's account (moto keeps
    one account, so what is checked here is that every call of the pipeline carries it)."""
    for name, value in MOTO_CREDENTIALS.items():  # boto3's own chain, as the CLI reads it
        monkeypatch.setenv(name, value)
    settings = Settings.from_env({**stack.as_env(), "EXPECTED_BUCKET_OWNER": "123456789012"})
    client = s3_client_from_settings(settings)
    sent: list[tuple[str, Any]] = []
    client.meta.events.register(
        "before-call.s3.*",
        lambda params, model, **_: sent.append(
            (model.name, params["headers"].get("x-amz-expected-bucket-owner"))
        ),
    )
    store = ObjectStore(client, new_bucket("owned"))

    store.put_bytes("a.json", b"{}")
    assert store.get_json("a.json") == {}
    assert list(store.keys("")) == ["a.json"]
    store.delete("a.json")

    assert sent and {owner for _, owner in sent} == {"123456789012"}, sent
    assert {"PutObject", "GetObject", "ListObjectsV2", "DeleteObject"} <= {n for n, _ in sent}
    unbound = s3_client_from_settings(Settings.from_env(stack.as_env()))
    assert expecting_owner(unbound, "") is unbound
