"""The typed, versioned manifests: what is written, how old manifests read, and that a
version this code does not understand stops the stage with one line naming the object."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.stack import StackEndpoints
from etl import layout
from etl.config import Settings
from etl.errors import SchemaDriftError
from etl.ingest.run import ingest
from etl.load.loader import init_warehouse, load_pending
from etl.manifests import FORMAT_VERSION, ManifestFormatError
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests import processed as processed_manifest
from etl.storage import ObjectStore
from etl.transform.batch import transform_pending
from tests.etl.test_main import env_for, run_etl


def stored(store: ObjectStore, batch_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(store.get_bytes(layout.manifest_key(batch_id)) or b"")
    return document


def test_both_manifests_are_written_with_their_format_version(settings: Settings, s3: Any) -> None:
    batch = ingest(settings, s3).batch_id
    transform_pending(settings, s3)
    ingestion = ObjectStore(s3, settings.ingestion_bucket)
    processed = ObjectStore(s3, settings.processed_bucket)

    raw_ingestion, raw_processed = stored(ingestion, batch), stored(processed, batch)

    assert raw_ingestion["format_version"] == raw_processed["format_version"] == FORMAT_VERSION == 1
    # every field of the TypedDicts is written, and nothing else
    assert set(raw_ingestion) == set(ingestion_manifest.IngestionManifest.__annotations__)
    assert set(raw_processed) == set(processed_manifest.ProcessedManifest.__annotations__)
    for entry in raw_ingestion["tables"].values():
        assert set(entry) == set(ingestion_manifest.IngestionTableEntry.__annotations__)
    for entry in raw_processed["tables"].values():
        assert set(entry) == set(processed_manifest.ProcessedTableEntry.__annotations__)
    assert ingestion_manifest.read(ingestion, batch) == raw_ingestion
    assert processed_manifest.read(processed, batch) == raw_processed


def test_manifests_written_before_format_version_read_as_version_1(
    settings: Settings, s3: Any
) -> None:
    """Buckets filled before the field existed keep working: transform and load read them."""
    init_warehouse(settings)
    batch = ingest(settings, s3).batch_id
    ingestion = ObjectStore(s3, settings.ingestion_bucket)
    old = stored(ingestion, batch)
    del old["format_version"]
    ingestion.put_json(layout.manifest_key(batch), old)

    assert ingestion_manifest.read(ingestion, batch) == {**old, "format_version": 1}
    [transformed] = transform_pending(settings, s3)
    processed = ObjectStore(s3, settings.processed_bucket)
    old_processed = stored(processed, batch)
    del old_processed["format_version"]
    processed.put_json(layout.manifest_key(batch), old_processed)
    [loaded] = load_pending(settings, s3)

    assert transformed.batch_id == loaded.batch_id == batch
    assert sum(t["inserted"] for t in loaded.tables.values()) > 0


@pytest.mark.parametrize("bucket", ["ingestion", "processed"])
def test_an_unknown_format_version_stops_the_stage_with_one_line(
    stack: StackEndpoints, settings: Settings, s3: Any, bucket: str
) -> None:
    init_warehouse(settings)
    batch = ingest(settings, s3).batch_id
    if bucket == "processed":
        transform_pending(settings, s3)
    store = ObjectStore(s3, getattr(settings, f"{bucket}_bucket"))
    key = layout.manifest_key(batch)
    store.put_json(key, {**stored(store, batch), "format_version": 2})

    with pytest.raises(ManifestFormatError) as raised:
        if bucket == "ingestion":
            transform_pending(settings, s3)
        else:
            load_pending(settings, s3)
    cli = run_etl(env_for(stack, settings), "transform" if bucket == "ingestion" else "load")

    message = (
        f"s3://{store.bucket}/{key}: {bucket} manifest format_version 2 is not understood"
        " (this code reads version(s) 1)"
    )
    assert str(raised.value) == message
    assert isinstance(raised.value, SchemaDriftError)  # a contract break: terminal
    assert cli.returncode != 0 and cli.stderr == f"error: {message}\n"


def test_a_manifest_missing_a_field_is_refused_naming_it(settings: Settings, s3: Any) -> None:
    batch = ingest(settings, s3).batch_id
    ingestion = ObjectStore(s3, settings.ingestion_bucket)
    document = stored(ingestion, batch)
    del document["tables"]["payment"]["sha256"]
    ingestion.put_json(layout.manifest_key(batch), document)

    with pytest.raises(ManifestFormatError, match="entry 'payment' lacks field\\(s\\) sha256$"):
        transform_pending(settings, s3)
    assert list(ObjectStore(s3, settings.processed_bucket).keys("")) == []
