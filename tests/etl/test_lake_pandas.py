"""The processed lake read by pandas, the analysts' tool: every warehouse table of every
batch, read with `pandas.read_parquet` as docs/architecture.md shows, equals the warehouse
(exact decimals, dates, times, NULLs). Runs under both pinned pandas versions: 2.1.4 with
Airflow 3.0.6 (`make pytest`) and 3.0.5 with Airflow 3.3.1 (`make compat`)."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from pyarrow import fs

from devstack.stack import REGION, StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.ops.cycle import run_cycle
from etl.warehouse import WAREHOUSE_TABLES
from simulator.simulate import SimulationPlan, simulate
from tests.etl.load import warehouse_rows


def read_table(s3: fs.S3FileSystem, bucket: str, table: str) -> pd.DataFrame:
    """docs/architecture.md's lines for analysts: the table's file of every batch, oldest
    first, as listed by the processed manifests, with pyarrow-backed dtypes. The key's
    Hive partitions (year=/month=/day=) are not columns of the file: `partitioning=None`,
    or pyarrow adds them (and they clash with dim_date's own `year`)."""
    manifests = s3.get_file_info(fs.FileSelector(f"{bucket}/_manifests"))
    frames = []
    for info in sorted(manifests, key=lambda i: i.path):
        with s3.open_input_stream(info.path) as stream:
            entry = json.load(stream)["tables"].get(table)
        if entry:
            path = f"{bucket}/{entry['file']}"
            frames.append(
                pd.read_parquet(path, filesystem=s3, dtype_backend="pyarrow", partitioning=None)
            )
    return pd.concat(frames, ignore_index=True)


def lake_filesystem(stack: StackEndpoints) -> fs.S3FileSystem:
    """The same S3FileSystem an analyst makes, pointed at the local stack's moto server."""
    return fs.S3FileSystem(
        access_key="local",
        secret_key="local",
        region=REGION,
        endpoint_override=stack.aws_endpoint_url.removeprefix("http://"),
        scheme="http",
    )


def python_rows(frame: pd.DataFrame) -> set[tuple[Any, ...]]:
    """Each row as Python values, pandas' missing value as None (the warehouse's NULL)."""
    columns = [[None if v is pd.NA else v for v in frame[c].tolist()] for c in frame.columns]
    return set(zip(*columns, strict=True))


@pytest.fixture
def loaded(settings: Settings, s3: Any) -> Settings:
    """Two batches in the lake and the warehouse: a full extract, then two simulated days
    with edits (so dimensions have newer versions and facts new versions)."""
    init_warehouse(settings)
    run_cycle(settings, s3)
    source = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    simulate(source, SimulationPlan(days=2, edits_per_weekday=4, seed=11))
    run_cycle(settings, s3)
    return settings


def test_every_processed_table_read_by_pandas_equals_the_warehouse(
    loaded: Settings, stack: StackEndpoints
) -> None:
    s3 = lake_filesystem(stack)
    checked = []
    for name, spec in WAREHOUSE_TABLES.items():
        frame = read_table(s3, loaded.processed_bucket, name)

        assert list(frame.columns) == list(spec.columns), name
        dtypes = {c: frame[c].dtype for c in frame.columns}
        assert dtypes == {f.name: pd.ArrowDtype(f.type) for f in spec.schema}, name
        if spec.kind == "dim":  # SCD1: the newest version of each id is the warehouse's row
            frame = frame.drop_duplicates(subset=list(spec.key), keep="last")
        assert python_rows(frame) == set(warehouse_rows.rows(loaded, name)), name
        assert len(frame) == len(warehouse_rows.rows(loaded, name)), name
        checked.append(name)

    assert checked == list(WAREHOUSE_TABLES)


def test_what_pandas_reads_keeps_exact_decimals_dates_times_and_nulls(
    loaded: Settings, stack: StackEndpoints
) -> None:
    s3 = lake_filesystem(stack)
    payments = read_table(s3, loaded.processed_bucket, "fact_payment")
    transactions = read_table(s3, loaded.processed_bucket, "dim_transaction")
    locations = read_table(s3, loaded.processed_bucket, "dim_location")

    amount = payments["payment_amount"].iloc[0]
    assert isinstance(amount, Decimal) and amount == amount.quantize(Decimal("0.01"))
    column = WAREHOUSE_TABLES["fact_payment"].columns.index("payment_amount")
    exact_total = sum(r[column] for r in warehouse_rows.rows(loaded, "fact_payment"))
    assert payments["payment_amount"].sum() == exact_total  # Decimal arithmetic, not float
    assert type(payments["payment_date"].iloc[0]).__name__ == "date"
    assert type(payments["created_time"].iloc[0]).__name__ == "time"
    # an id with NULLs stays an integer column (a numpy int column would turn into float64)
    purchases = transactions[transactions["transaction_type"] == "PURCHASE"]
    assert purchases["sales_order_id"].isna().all() and len(purchases) > 0
    assert transactions["sales_order_id"].dtype == pd.ArrowDtype(pa.int32())
    assert locations["address_line_2"].isna().any()


def test_pandas_own_inference_of_an_extract_would_lose_the_types(loaded: Settings, s3: Any) -> None:
    """Why transform is pyarrow with explicit schemas (docs/architecture.md): pandas left to
    infer the same CSV extract makes money binary floats and a NULL-able id a float."""
    manifests = s3.list_objects_v2(Bucket=loaded.ingestion_bucket, Prefix="_manifests/")
    first = min(o["Key"] for o in manifests["Contents"])
    tables = json.loads(s3.get_object(Bucket=loaded.ingestion_bucket, Key=first)["Body"].read())[
        "tables"
    ]

    def extract(table: str) -> pd.DataFrame:
        body = s3.get_object(Bucket=loaded.ingestion_bucket, Key=tables[table]["file"])["Body"]
        return pd.read_csv(io.BytesIO(body.read()))

    payment, transaction = extract("payment"), extract("transaction")
    assert payment["payment_amount"].dtype == "float64"
    assert transaction["sales_order_id"].dtype == "float64"
    assert transaction["sales_order_id"].isna().any()
    for column in ("payment_date", "created_at"):
        assert not pd.api.types.is_datetime64_any_dtype(payment[column])
        assert isinstance(payment[column].iloc[0], str)
