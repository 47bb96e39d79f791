"""The large sources are remodelled chunk by chunk: the chunk size changes nothing but memory."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl import layout
from etl.config import Settings
from etl.errors import DataError
from etl.ingest.run import ingest
from etl.storage import ObjectStore
from etl.transform.batch import SNAPSHOT_PREFIX, STATE_KEY, transform_pending
from etl.transform.versions import VERSION_SCHEMA, emitted_after
from simulator.simulate import SimulationPlan, simulate

TINY_BLOCK = 4096  # a few dozen rows per chunk


def _published(store: ObjectStore) -> tuple[dict[str, Counter[tuple[Any, ...]]], dict[str, int]]:
    """(every processed row per table, the row groups of each table's files)."""
    rows: dict[str, Counter[tuple[Any, ...]]] = {}
    groups: Counter[str] = Counter()
    for key in store.keys(layout.MANIFEST_PREFIX):
        for table, entry in (store.get_json(key) or {})["tables"].items():
            body = store.get_bytes(entry["file"]) or b""
            groups[table] += pq.ParquetFile(io.BytesIO(body)).num_row_groups
            data = pq.read_table(io.BytesIO(body))
            rows.setdefault(table, Counter()).update(tuple(r.values()) for r in data.to_pylist())
    return rows, dict(groups)


def _state(store: ObjectStore) -> dict[str, pa.Table]:
    batch_id = (store.get_json(STATE_KEY) or {})["batch_id"]
    prefix = f"{SNAPSHOT_PREFIX}{batch_id}/"
    return {key.removeprefix(prefix): pq.read_table(io.BytesIO(store.get_bytes(key) or b""))
            for key in store.keys(prefix)}  # fmt: skip


def test_tiny_chunks_publish_the_same_rows_and_state_as_whole_blocks(
    settings: Settings, s3: Any, new_bucket: Callable[[str], str]
) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    ingest(settings, s3)
    simulate(url, SimulationPlan(days=2, edits_per_weekday=3, seed=5))
    ingest(settings, s3)
    chunked = replace(settings, processed_bucket=new_bucket("chunked"))

    transform_pending(settings, s3)
    transform_pending(chunked, s3, block_size=TINY_BLOCK)

    whole_rows, whole_groups = _published(ObjectStore(s3, settings.processed_bucket))
    chunk_rows, chunk_groups = _published(ObjectStore(s3, chunked.processed_bucket))
    assert chunk_rows == whole_rows
    assert sum(whole_rows["fact_sales_order"].values()) > 100
    assert chunk_groups["fact_sales_order"] > whole_groups["fact_sales_order"]  # really chunked
    whole_state = _state(ObjectStore(s3, settings.processed_bucket))
    chunk_state = _state(ObjectStore(s3, chunked.processed_bucket))
    assert set(chunk_state) == set(whole_state)
    for name, table in whole_state.items():
        assert (
            chunk_state[name]
            .sort_by(table.column_names[0])
            .equals(table.sort_by(table.column_names[0]))
        ), name


def test_a_version_repeated_across_chunks_is_refused_not_delivered_twice() -> None:
    version = pa.table({"id": [7], "last_updated": pa.array([1_700_000_000_000], pa.timestamp("ms"))},
                       schema=VERSION_SCHEMA)  # fmt: skip
    with pytest.raises(DataError, match="payment: the extract holds 1 repeated row version"):
        emitted_after(VERSION_SCHEMA.empty_table(), [version, version], "payment")
    assert emitted_after(VERSION_SCHEMA.empty_table(), [version], "payment").num_rows == 1
