"""`look` (thin adapter): reads what the two buckets and the warehouse hold into a `Lake`:
manifests through their typed readers, every object with its size, age and, when a
manifest references it, its sha256; open multipart uploads; the two state objects and the
newest state snapshot; the set-aside report cursor; the load ledger; repeated warehouse
keys. It only reads, so the checks can run beside the stages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from etl import bookkeeping, layout
from etl.errors import DamagedObjectError, StorageError
from etl.load.target import Target
from etl.manifests import ManifestFormatError
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests import processed as processed_manifest
from etl.ops.doctor.lake import Bucket, Lake, OpenUpload, StoredObject, newest_batch
from etl.storage import ObjectStore
from etl.transform.batch import SNAPSHOT_PREFIX, read_parquet, writes_rejects
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from etl.transform.rejects_area import read_cursor
from etl.warehouse import WAREHOUSE_TABLES

Connection = psycopg.Connection[tuple[Any, ...]]


def _listing(store: ObjectStore) -> dict[str, StoredObject]:
    found = {}
    try:
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = StoredObject(
                    item["Key"], int(item["Size"]), item["LastModified"]
                )
    except (BotoCoreError, ClientError) as error:
        raise StorageError(f"cannot list s3://{store.bucket}: {error}") from error
    return found


def _uploads(store: ObjectStore) -> list[OpenUpload]:
    found = []
    try:
        pages = store.client.get_paginator("list_multipart_uploads").paginate(Bucket=store.bucket)
        for page in pages:
            for item in page.get("Uploads", []):
                found.append(OpenUpload(item["Key"], item["UploadId"], item["Initiated"]))
    except (BotoCoreError, ClientError) as error:
        raise StorageError(f"cannot list uploads of s3://{store.bucket}: {error}") from error
    return found


def _sha256(store: ObjectStore, key: str) -> str | None:
    """Streamed, so a large extract never sits in memory."""
    reader = store.open(key)
    if reader is None:
        return None
    with reader:
        while reader.read(1024 * 1024):
            pass
    return reader.sha256


def _bucket(store: ObjectStore, parse: Any, state_key: str) -> Bucket[Any]:
    objects = _listing(store)
    manifests, unreadable = {}, {}
    for key in sorted(k for k in objects if k.startswith(layout.MANIFEST_PREFIX)):
        try:
            manifests[layout.batch_id_of_manifest(key)] = parse(store, key)
        except ManifestFormatError as error:
            unreadable[key] = str(error)  # names the object already
        except DamagedObjectError as error:  # not JSON
            unreadable[key] = str(error)
    bucket: Bucket[Any] = Bucket(
        store.bucket, manifests, unreadable, objects, {}, _uploads(store), None
    )
    for key in bucket.referenced():
        if key in objects:
            digest = _sha256(store, key)
            if digest is not None:
                bucket.sha256[key] = digest
    try:
        bucket.state = store.get_json(state_key)
        if bucket.state is not None and (
            not isinstance(bucket.state, dict)
            or not isinstance(bucket.state.get("batch_id"), str | None)
        ):
            raise store.damaged(state_key, "a JSON document of the wrong shape")
    except DamagedObjectError as error:
        bucket.state, bucket.state_damage = None, str(error)
    return bucket


def _with_snapshot_damage(store: ObjectStore, bucket: Bucket[Any]) -> Bucket[Any]:
    """Read each object of the newest batch's state snapshot: transform stops on one it
    cannot read, so the check must see the damage, not only the listing."""
    newest = newest_batch(bucket.manifests)
    prefix = f"{SNAPSHOT_PREFIX}{newest}/"
    for key in sorted(k for k in bucket.objects if newest and k.startswith(prefix)):
        try:
            read_parquet(store, key)
        except DamagedObjectError as error:
            bucket.damaged[key] = str(error)
    return bucket


def _ledger(conn: Connection) -> list[str]:
    exists = conn.execute("SELECT to_regclass('etl.load_ledger') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute("SELECT batch_id FROM etl.load_ledger ORDER BY loaded_at, batch_id")
    return [str(row[0]) for row in rows.fetchall()]


def _duplicate_keys(conn: Connection, target: Target) -> dict[str, int]:
    """Rows beyond the first per key, per table; -1 for a table that does not exist."""
    found = {}
    existing = target.existing_tables(conn)
    for name, table in WAREHOUSE_TABLES.items():
        if target.names.table(name) not in existing:
            found[name] = -1
            continue
        key = sql.SQL(", ").join(target.column(name, c) for c in table.key)
        query = sql.SQL(
            "SELECT coalesce(sum(n - 1), 0) FROM"
            " (SELECT count(*) AS n FROM {} GROUP BY {} HAVING count(*) > 1) AS repeated"
        ).format(target.table(name), key)
        row = conn.execute(query).fetchone()
        if row and row[0]:
            found[name] = int(row[0])
    return found


def look(
    ingestion: ObjectStore,
    processed: ObjectStore,
    conn: Connection,
    target: Target,
    now: datetime | None = None,
) -> Lake:
    """Read everything the checks need. Reads only (and only bookkeeping that is the
    loader's own: etl.bookkeeping)."""
    bookkeeping.check(conn)
    lake = Lake(
        _bucket(ingestion, ingestion_manifest.read_key, layout.STATE_KEY),
        _with_snapshot_damage(
            processed, _bucket(processed, processed_manifest.read_key, TRANSFORM_STATE_KEY)
        ),
        _ledger(conn),
        _duplicate_keys(conn, target),
        now or datetime.now(UTC),
        _cursor_damage(processed),
    )
    newest = newest_batch(lake.processed.manifests)
    lake.snapshot_has_rejects = bool(newest) and writes_rejects(processed, newest or "")
    conn.rollback()  # end the read-only transaction the queries opened
    return lake


def _cursor_damage(processed: ObjectStore) -> str:
    try:
        read_cursor(processed)
    except DamagedObjectError as error:
        return str(error)
    return ""
