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
ATTEMPT_MARK = "-a"  # before the attempt (lease generation) in a data file's name
STATE_KEY = "_state/watermarks.json"
BATCH_ID_FORMAT = "%Y%m%dT%H%M%S%fZ"


def batch_id_for(batch_ts: datetime) -> str:
    if batch_ts.tzinfo is None:
        raise ValueError("batch timestamps must be timezone-aware")
    return batch_ts.astimezone(UTC).strftime(BATCH_ID_FORMAT)


def batch_ts_of(batch_id: str) -> datetime:
    return datetime.strptime(batch_id, BATCH_ID_FORMAT).replace(tzinfo=UTC)


def extract_key(table: str, batch_id: str, attempt: int | None = None) -> str:
    """`attempt` is the writer's lease generation: no two attempts at a batch ever write
    the same key, so a writer that lost its lease and resumes can only delete its own
    files or those it listed before it paused, never its successor's."""
    return data_key(table, batch_id, "csv", attempt)


def data_key(table: str, batch_id: str, extension: str, attempt: int | None = None) -> str:
    """A Hive-partitioned data file of one batch (an extract, or a processed table)."""
    ts = batch_ts_of(batch_id)
    suffix = "" if attempt is None else f"{ATTEMPT_MARK}{attempt}"
    return f"{table}/year={ts:%Y}/month={ts:%m}/day={ts:%d}/{table}-{batch_id}{suffix}.{extension}"


def batch_id_of_data_key(table: str, key: str, extension: str) -> str | None:
    """The batch id of a data file key written by data_key (with or without an attempt),
    None for anything else."""
    stem = key.rsplit("/", 1)[-1].removeprefix(f"{table}-").removesuffix(f".{extension}")
    batch_id, mark, attempt = stem.partition(ATTEMPT_MARK)
    if mark and not attempt.isdigit():
        return None
    try:
        expected = data_key(table, batch_id, extension, int(attempt) if mark else None)
    except ValueError:  # not a batch id
        return None
    return batch_id if key == expected else None


REJECTS_PREFIX = "rejects/"  # processed bucket: the rows transform set aside


def rejects_key(table: str, batch_id: str, attempt: int | None = None) -> str:
    """The rows of one warehouse table that one batch set aside, Hive-partitioned like the
    data (`rejects/<table>/year=/month=/day=/<table>-<batch>.parquet`): one Athena table,
    or one `pandas.read_parquet`, per warehouse table. No leading underscore: Hive and
    Athena skip such folders."""
    return REJECTS_PREFIX + data_key(table, batch_id, "parquet", attempt)


def batch_id_of_rejects_key(key: str) -> str | None:
    """The batch id of a key written by rejects_key, None for anything else."""
    table = key.removeprefix(REJECTS_PREFIX).split("/", 1)[0]
    if not key.startswith(REJECTS_PREFIX) or not table:
        return None
    return batch_id_of_data_key(table, key.removeprefix(REJECTS_PREFIX), "parquet")


def manifest_key(batch_id: str) -> str:
    return f"{MANIFEST_PREFIX}{batch_id}.json"


def batch_id_of_manifest(key: str) -> str:
    return key.removeprefix(MANIFEST_PREFIX).removesuffix(".json")
