"""After the soak: is everything there exactly once, and is nothing else there?

- **Warehouse = expectation.** Each warehouse table is compared row for row with what the
  source's history implies, computed in SQL (simulator.expectations): dimensions are
  the source's current state; facts are every version that existed when an extract
  succeeded, each exactly once; dim_date is the calendar of the dates those facts use.
- **`python -m etl doctor` finds nothing** (the same checks, `etl.ops.doctor`, with no age
  threshold): every referenced object there with its size and sha256, manifests chained,
  no ingestion batch skipped by transform, the ledger against the processed manifests and
  in batch order, the state objects at the newest batch, no orphan data object or open
  multipart upload, no stale state snapshot, warehouse keys unique.
- **Nothing pending** (soak only): the final clean cycle transformed every ingestion batch
  and loaded every processed batch.

Each missing, extra or duplicated row and each broken rule counts as one mismatch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from etl.load.target import Target
from etl.names import WarehouseNames
from etl.ops import doctor
from etl.storage import ObjectStore
from etl.warehouse import WAREHOUSE_TABLES
from simulator.expectations import Row, calendar, current_dimensions

SHOWN = 3  # example rows per finding


@dataclass
class Verdict:
    rows_checked: int = 0
    mismatches: int = 0
    findings: list[str] = field(default_factory=list)

    def fail(self, text: str, count: int = 1) -> None:
        self.mismatches += count
        self.findings.append(text)


@dataclass(frozen=True)
class Lake:
    """Where the soak looks: the two databases and the two buckets, bypassing any proxy."""

    source_url: str
    warehouse_url: str
    s3: Any
    ingestion_bucket: str
    processed_bucket: str

    @property
    def ingestion(self) -> ObjectStore:
        return ObjectStore(self.s3, self.ingestion_bucket)

    @property
    def processed(self) -> ObjectStore:
        return ObjectStore(self.s3, self.processed_bucket)


def verify(lake: Lake, facts: dict[str, set[Row]]) -> Verdict:
    verdict = Verdict()
    check_warehouse(lake, facts, verdict)
    check_invariants(lake, verdict)
    return verdict


def warehouse_rows(url: str, table: str) -> list[Row]:
    """The contract columns (no surrogate id) of every row of a warehouse table."""
    target = Target("public", WarehouseNames())
    spec = WAREHOUSE_TABLES[table]
    query = sql.SQL("SELECT {} FROM {}").format(target.columns(spec), target.table(table))
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def check_warehouse(lake: Lake, facts: dict[str, set[Row]], verdict: Verdict) -> None:
    expected: dict[str, set[Row]] = {
        **current_dimensions(lake.source_url),
        **facts,
        "dim_date": calendar(lake.source_url, facts),
    }
    for table in WAREHOUSE_TABLES:
        rows = warehouse_rows(lake.warehouse_url, table)
        verdict.rows_checked += len(rows)
        compare(table, rows, expected.get(table, set()), verdict)


def compare(table: str, rows: list[Row], expected: set[Row], verdict: Verdict) -> None:
    twice = {row: n for row, n in Counter(rows).items() if n > 1}
    missing, extra = expected - set(rows), set(rows) - expected
    for what, found in (("missing", missing), ("unexpected", extra), ("duplicated", set(twice))):
        if found:
            count = sum(twice[r] - 1 for r in found) if what == "duplicated" else len(found)
            examples = sorted(found, key=repr)[:SHOWN]
            verdict.fail(f"{table}: {count} {what} row(s), e.g. {examples}", count)


def check_invariants(lake: Lake, verdict: Verdict) -> None:
    """What `python -m etl doctor` checks (one implementation: etl.ops.doctor), with no age
    threshold: after the soak no stage is running, so any debris counts. Then, soak-only,
    nothing may be pending: the final clean cycle transformed and loaded everything."""
    with psycopg.connect(lake.warehouse_url) as conn:
        seen = doctor.look(lake.ingestion, lake.processed, conn, Target("public", WarehouseNames()))
    report = doctor.check(seen, min_age=timedelta(0))
    for finding in report.findings:
        verdict.fail(finding.line(), finding.count)
    untransformed = set(seen.ingestion.manifests) - set(seen.processed.manifests)
    unloaded = set(seen.processed.manifests) - set(seen.ledger)
    for what, ids in (
        ("ingestion batches never transformed", untransformed),
        ("processed batches never loaded", unloaded),
    ):
        if ids:
            verdict.fail(f"{what}: {sorted(ids)[:SHOWN]}", len(ids))
