"""The pure half of a transform batch, with plain Arrow tables: the warehouse tables, the
rows set aside, the next snapshot and every key the batch writes. No bucket, no files."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from etl import layout
from etl.errors import DataError, EtlError
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.transform.build import (
    REJECTED_SNAPSHOT,
    SNAPSHOT_PREFIX,
    BatchRemodel,
    BuiltBatch,
    Remodelled,
    data_files,
    output_key,
    set_aside_files,
    small_sources,
    snapshot_files,
    snapshot_names,
)
from etl.transform.rejects import FAIL, SET_ASIDE
from etl.transform.remodel import TransformState, remodel
from etl.warehouse import WAREHOUSE_TABLES
from tests.etl.transform.frames import (
    address,
    counterparty,
    department,
    frame,
    payment,
    sales_order,
    staff,
)

B1, B2 = "20261114T090000000000Z", "20261115T090000000000Z"
CREATED = datetime(2024, 11, 14, 9, 12, 10, 51000)
PAID_AT = datetime(2024, 11, 15, 7, 55, 11, 311000)


def manifest_of(batch_id: str, tables: dict[str, pa.Table]) -> IngestionManifest:
    """An ingestion manifest listing `tables` (what a batch's build reads it for)."""
    at = layout.batch_ts_of(batch_id)
    entries = {
        name: ingestion_manifest.table_entry(
            table.num_rows, None, table.column_names, None, None, 0
        )
        for name, table in tables.items()
    }
    return ingestion_manifest.new(batch_id, at, at, 0.0, False, 900.0, None, entries, {})


def first_batch(location: str | None = "Manchester") -> dict[str, pa.Table]:
    """Six sources; staff 1 works in department 6, whose `location` is given."""
    return {
        "address": frame("address", [address(15), address(29)]),
        "counterparty": frame("counterparty", [counterparty(1, 15), counterparty(4, 29)]),
        "department": frame("department", [department(4, "Leeds"), department(6, location)]),
        "staff": frame("staff", [staff(1, 6), staff(3, 4)]),
        "payment": frame(
            "payment", [payment(9, CREATED, CREATED, False), payment(10, CREATED, PAID_AT, True)]
        ),
        "sales_order": frame("sales_order", [sales_order(5, CREATED)]),
    }


def remodelled(
    batch_id: str,
    tables: dict[str, pa.Table],
    state: TransformState,
    policy: str = SET_ASIDE,
    chunk_rows: int = 1,
) -> tuple[Remodelled, dict[str, list[pa.Table]]]:
    """The batch fed as the stage feeds it: small sources whole, the row-wise ones in chunks
    of `chunk_rows`; returns the result and the row-wise warehouse rows per table."""
    manifest = manifest_of(batch_id, tables)
    build = BatchRemodel(manifest, state, policy)
    build.small({name: tables[name] for name in small_sources(manifest)})
    rows: dict[str, list[pa.Table]] = {}
    for source in ("transaction", "sales_order", "purchase_order", "payment"):
        table = tables.get(source)
        for offset in range(0, table.num_rows if table is not None else 0, chunk_rows):
            assert table is not None
            target, out = build.rows(source, table.slice(offset, chunk_rows))
            rows.setdefault(target, []).append(out)
    return build.finish(), rows


def test_a_batch_fed_in_chunks_builds_what_the_whole_table_remodel_builds() -> None:
    whole, whole_state = remodel(first_batch(), TransformState())

    done, rows = remodelled(B1, first_batch(), TransformState())

    for name in ("dim_location", "dim_counterparty", "dim_staff", "dim_date"):
        assert done.outputs[name].equals(whole[name]), name
    assert pa.concat_tables(rows["fact_payment"]).equals(whole["fact_payment"])
    assert pa.concat_tables(rows["fact_sales_order"]).equals(whole["fact_sales_order"])
    assert done.state_after.current.keys() == whole_state.current.keys()
    for name, table in done.state_after.current.items():
        assert table.equals(whole_state.current[name]), name
    assert done.state_after.emitted_of("payment").num_rows == 2


def test_a_bad_row_is_set_aside_and_kept_open_in_the_next_snapshot() -> None:
    done, _ = remodelled(B1, first_batch(location=None), TransformState())

    assert done.outputs["dim_staff"].column("staff_id").to_pylist() == [3]
    [rejected] = done.rejected.to_pylist()
    assert (rejected["table"], rejected["key"], rejected["column"]) == (
        "dim_staff",
        "1",
        "location",
    )
    assert rejected["batch_id"] == B1
    assert done.state_after.rejected.num_rows == 1


def test_a_corrected_row_closes_its_set_aside_entry() -> None:
    first, _ = remodelled(B1, first_batch(location=None), TransformState())
    fixed = {"department": frame("department", [department(6, "York", PAID_AT)])}

    done, _ = remodelled(B2, fixed, first.state_after)

    assert done.rejected.num_rows == 0, "nothing newly set aside"
    assert done.state_after.rejected.num_rows == 0, "the staff row was built at last"
    assert done.outputs["dim_staff"].column("staff_id").to_pylist() == [1]


def test_under_the_fail_policy_a_bad_row_stops_the_build() -> None:
    with pytest.raises(DataError, match="dim_staff"):
        remodelled(B1, first_batch(location=None), TransformState(), FAIL)


def test_a_manifest_naming_an_unknown_table_is_refused_before_anything_is_built() -> None:
    manifest = manifest_of(B1, {"staff": frame("staff", [staff(1, 6)])})
    manifest["tables"]["sales"] = manifest["tables"]["staff"]

    with pytest.raises(EtlError, match=f"ingestion manifest {B1} names unknown table 'sales'"):
        BatchRemodel(manifest, TransformState(), SET_ASIDE)


def test_every_key_the_batch_writes() -> None:
    done, rows = remodelled(B1, first_batch(location=None), TransformState())
    outputs = {**done.outputs, **{name: pa.concat_tables(t) for name, t in rows.items()}}
    built = BuiltBatch(B1, {}, outputs, done.state_after, done.rejected)

    files = data_files(built, 4)
    names = [name for name, _, _ in files]
    assert names == [name for name in WAREHOUSE_TABLES if name in names], "warehouse order"
    assert {"dim_staff", "dim_date", "fact_payment", "fact_sales_order"} <= set(names)
    by_name = {name: (key, data) for name, key, data in files}
    assert by_name["fact_payment"][0] == output_key("fact_payment", B1, 4)
    assert "dim_design" not in by_name, "a table without rows has no file"
    assert all(isinstance(data, pa.Table) and data.num_rows for _, data in by_name.values())
    assert set_aside_files(built, 4) == [
        ("dim_staff", layout.rejects_key("dim_staff", B1, 4), done.rejected)
    ]
    snapshot = snapshot_files(B1, done.state_after)
    assert sorted(snapshot) == sorted(
        f"{SNAPSHOT_PREFIX}{B1}/{name}.parquet" for name in [*snapshot_names(), REJECTED_SNAPSHOT]
    )
    assert snapshot[f"{SNAPSHOT_PREFIX}{B1}/{REJECTED_SNAPSHOT}.parquet"].num_rows == 1
