"""Streaming writes through moto's S3 server: multipart for big objects, nothing partial."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest

from etl.errors import StorageError
from etl.storage import PART_SIZE, ObjectStore


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
