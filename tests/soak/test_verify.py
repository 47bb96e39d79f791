"""Each check of the soak's verdict can fail: one clean cycle verifies clean, then one
breakage of each kind is made by hand and must be reported, and counted, precisely."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devstack.stack import StackEndpoints
from etl import layout
from etl.config import Secret, Settings
from etl.load.loader import init_warehouse
from etl.ops.cycle import run_cycle
from etl.transform.batch import SNAPSHOT_PREFIX
from etl.warehouse import WAREHOUSE_TABLES
from simulator.expectations import Row, current_fact_versions
from simulator.seed import SeedPlan, seed_totesys
from simulator.simulate import SimulationPlan, simulate
from soak.verify import Lake, Verdict, verify

_buckets = itertools.count()


@dataclass
class Cycled:
    settings: Settings
    lake: Lake
    facts: dict[str, set[Row]]
    batch_id: str

    def cycle(self) -> str:
        """One more cycle after a simulated day; the expectation follows the source."""
        simulate(self.lake.source_url, SimulationPlan(days=1, seed=3))
        batch_id = run_cycle(self.settings, self.lake.s3).ingested.batch_id
        for table, versions in current_fact_versions(self.lake.source_url).items():
            self.facts[table] |= versions
        return batch_id


@pytest.fixture
def cycled(stack: StackEndpoints, make_database: Callable[[str], str]) -> Cycled:
    """One clean cycle on a fresh source, warehouse and pair of buckets."""
    source, warehouse = make_database("soak_source"), make_database("soak_warehouse")
    seed_totesys(source, SeedPlan(scale=0.02))
    s3 = stack.s3_client()
    buckets = [f"soak-{kind}-{next(_buckets)}" for kind in ("ingestion", "processed")]
    for bucket in buckets:
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
    settings = Settings(
        totesys_db_url=Secret(source),
        warehouse_db_url=Secret(warehouse),
        ingestion_bucket=buckets[0],
        processed_bucket=buckets[1],
        aws_endpoint_url=stack.aws_endpoint_url,
    )
    init_warehouse(settings)
    batch_id = run_cycle(settings, s3).ingested.batch_id
    lake = Lake(source, warehouse, s3, *buckets)
    return Cycled(settings, lake, current_fact_versions(source), batch_id)


def findings(verdict: Verdict) -> str:
    return "\n".join(verdict.findings)


def in_warehouse(cycled: Cycled, statement: sql.SQL | sql.Composed) -> None:
    with psycopg.connect(cycled.lake.warehouse_url) as conn:
        conn.execute(statement)


def test_a_clean_run_verifies_clean(cycled: Cycled) -> None:
    cycled.cycle()

    verdict = verify(cycled.lake, cycled.facts)

    assert verdict.mismatches == 0, findings(verdict)
    assert verdict.rows_checked > 1000


def test_missing_unexpected_and_duplicated_rows_are_each_counted(cycled: Cycled) -> None:
    # a warehouse without the version index, where a faulty load could repeat a version
    columns = sql.SQL(", ").join(map(sql.Identifier, WAREHOUSE_TABLES["fact_payment"].columns))
    in_warehouse(cycled, sql.SQL("DROP INDEX fact_payment_version_key"))
    in_warehouse(cycled, sql.SQL(
        "INSERT INTO fact_payment ({cols}) SELECT {cols} FROM fact_payment"
        " WHERE payment_record_id = (SELECT min(payment_record_id) FROM fact_payment)"
    ).format(cols=columns))  # fmt: skip
    in_warehouse(cycled, sql.SQL("UPDATE dim_staff SET last_name = 'Stale' WHERE staff_id = 1"))
    [version] = itertools.islice(iter(cycled.facts["fact_sales_order"]), 1)
    cycled.facts["fact_sales_order"].add((-1, *version[1:]))  # a version that was never loaded

    verdict = verify(cycled.lake, cycled.facts)

    text = findings(verdict)
    assert "fact_payment: 1 duplicated row(s)" in text
    assert "fact_sales_order: 1 missing row(s), e.g. [(-1," in text
    assert "dim_staff: 1 missing row(s)" in text and "dim_staff: 1 unexpected row(s)" in text
    # and doctor's own rule, which needs no expectation: a version key is repeated
    assert "warehouse-keys: fact_payment: 1 row(s) repeat a (payment_id," in text
    assert verdict.mismatches == 5, text


def test_ledger_and_manifest_disagreements_are_reported(cycled: Cycled) -> None:
    second = cycled.cycle()
    with psycopg.connect(cycled.lake.warehouse_url) as conn:  # the older batch loaded last
        conn.execute(
            "UPDATE etl.load_ledger SET loaded_at = now() + interval '1 hour' WHERE batch_id = %s",
            (cycled.batch_id,),
        )
    ingestion = cycled.lake.ingestion
    # a batch nobody transformed, and whose manifest does not follow the one before it
    unprocessed = layout.batch_id_for(layout.batch_ts_of(second).replace(year=2099))
    copied = ingestion.get_json(layout.manifest_key(second)) or {}
    ingestion.put_json(
        layout.manifest_key(unprocessed),
        {**copied, "batch_id": unprocessed, "tables": {}, "previous_batch_id": None,
         "state_after": {"batch_id": unprocessed, "bookmarks": {}}},
    )  # fmt: skip

    text = findings(verify(cycled.lake, cycled.facts))

    assert "ledger: the ledger was not written in batch order" in text
    assert f"ingestion batches never transformed: ['{unprocessed}']" in text
    assert f"chain: ingestion manifest {unprocessed} follows None, not {second}" in text
    assert (
        f"ingest-state: s3://{ingestion.bucket}/_state/watermarks.json is at batch {second},"
        f" not the state after the newest batch {unprocessed}" in text
    )


def test_orphaned_missing_altered_and_half_written_objects_are_reported(cycled: Cycled) -> None:
    ingestion, processed = cycled.lake.ingestion, cycled.lake.processed
    referenced = sorted(
        entry["file"]
        for entry in (ingestion.get_json(layout.manifest_key(cycled.batch_id)) or {})[
            "tables"
        ].values()
        if entry["file"]
    )
    later = layout.batch_id_for(layout.batch_ts_of(cycled.batch_id).replace(year=2099))
    orphan = layout.extract_key("payment", later)
    ingestion.put_bytes(orphan, b'"payment_id"\n')
    ingestion.put_bytes(referenced[0], b"edited by hand\n")
    ingestion.delete(referenced[1])
    s3: Any = cycled.lake.s3
    upload = s3.create_multipart_upload(Bucket=processed.bucket, Key="fact_payment/x.parquet")
    processed.put_bytes(f"{SNAPSHOT_PREFIX}20200101T000000000000Z/address.parquet", b"old")

    verdict = verify(cycled.lake, cycled.facts)

    text = findings(verdict)
    batch = cycled.batch_id
    assert (
        f"orphans: s3://{ingestion.bucket}: 1 object(s) older than 0s that no manifest"
        f" references: {orphan};" in text
    )
    assert (
        f"file: s3://{ingestion.bucket}/{referenced[0]} of ingestion batch {batch} does not"
        " match its manifest (size or sha256)" in text
    )
    assert (
        f"file: s3://{ingestion.bucket}/{referenced[1]} of ingestion batch {batch} is missing"
        in text
    )
    assert f"uploads: s3://{processed.bucket}: 1 multipart upload(s) open" in text
    assert (
        f"snapshots: s3://{processed.bucket}: state snapshots of 1 batch(es) other than the"
        " newest are left: 20200101T000000000000Z;" in text
    )
    assert verdict.mismatches == 5, text
    s3.abort_multipart_upload(
        Bucket=processed.bucket, Key="fact_payment/x.parquet", UploadId=upload["UploadId"]
    )
