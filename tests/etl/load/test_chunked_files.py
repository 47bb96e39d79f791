"""Processed files of many row groups (a transform read in small blocks) load exactly as
one-group files do: the loader streams them a record batch at a time."""

from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq

from etl import layout
from etl.config import Settings
from etl.ingest.run import ingest
from etl.load.loader import init_warehouse, load_pending
from etl.storage import ObjectStore
from etl.transform.batch import transform_pending
from simulator.expectations import Row, current_fact_versions
from simulator.simulate import SimulationPlan, simulate
from tests.etl.load import warehouse_rows
from tests.etl.load.test_loader import assert_warehouse_matches, source


def test_many_row_group_files_load_to_the_sql_expectation(settings: Settings, s3: Any) -> None:
    init_warehouse(settings)
    facts: dict[str, set[Row]] = {}
    for day in range(2):
        if day:
            simulate(source(settings), SimulationPlan(days=1, edits_per_weekday=3, seed=day))
        ingest(settings, s3)
        for table, versions in current_fact_versions(source(settings)).items():
            facts.setdefault(table, set()).update(versions)
        transform_pending(settings, s3, block_size=2048)
        loaded = load_pending(settings, s3)
        assert len(loaded) == 1

    processed = ObjectStore(s3, settings.processed_bucket)
    first = processed.get_json(next(processed.keys(layout.MANIFEST_PREFIX))) or {}
    body = processed.get_bytes(first["tables"]["fact_sales_order"]["file"]) or b""
    assert pq.ParquetFile(io.BytesIO(body)).num_row_groups > 3
    assert_warehouse_matches(settings, facts)
    staged = warehouse_rows.rows(settings, "fact_sales_order")
    assert len(staged) == len(facts["fact_sales_order"])
