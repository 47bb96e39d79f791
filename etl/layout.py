"""Where everything lives in the ingestion bucket (documented in docs/architecture.md).

    <table>/year=YYYY/month=MM/day=DD/<table>-<batch_id>.csv   one extract per table and batch
    _manifests/<batch_id>.json                                 one per batch, written last
    _state/watermarks.json                                      bookmarks after the last batch

Partitions are Hive-style, so Athena/Glue can query the lake. A batch id is the batch's
timestamp in UTC (`YYYYMMDDTHHMMSSffffffZ`): ids sort in time order as plain strings, which
is how the latest manifest is found with one listing.
"""

from __future__ import annotations

from datetime import UTC, datetime

MANIFEST_PREFIX = "_manifests/"
STATE_KEY = "_state/watermarks.json"
BATCH_ID_FORMAT = "%Y%m%dT%H%M%S%fZ"


def batch_id_for(batch_ts: datetime) -> str:
    if batch_ts.tzinfo is None:
        raise ValueError("batch timestamps must be timezone-aware")
    return batch_ts.astimezone(UTC).strftime(BATCH_ID_FORMAT)


def batch_ts_of(batch_id: str) -> datetime:
    return datetime.strptime(batch_id, BATCH_ID_FORMAT).replace(tzinfo=UTC)


def extract_key(table: str, batch_id: str) -> str:
    ts = batch_ts_of(batch_id)
    return f"{table}/year={ts:%Y}/month={ts:%m}/day={ts:%d}/{table}-{batch_id}.csv"


def manifest_key(batch_id: str) -> str:
    return f"{MANIFEST_PREFIX}{batch_id}.json"


def batch_id_of_manifest(key: str) -> str:
    return key.removeprefix(MANIFEST_PREFIX).removesuffix(".json")
