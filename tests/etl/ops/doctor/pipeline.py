"""A pipeline that has run two clean cycles, for doctor's tests to break by hand."""

from __future__ import annotations

import subprocess
from typing import Any

import psycopg
from psycopg import sql

from devstack.stack import StackEndpoints
from etl import layout
from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.ops.cycle import run_cycle
from etl.storage import ObjectStore
from etl.warehouse import WAREHOUSE_TABLES
from simulator.expectations import Row, current_fact_versions
from simulator.simulate import SimulationPlan, simulate
from soak.verify import Lake, Verdict, check_warehouse
from tests.etl.test_main import env_for, run_etl

LATER = "20990101T000000000000Z"  # a batch id after any the tests make


class Pipeline:
    """Two clean cycles on a fresh source, warehouse and pair of buckets."""

    def __init__(self, stack: StackEndpoints, settings: Settings, s3: Any) -> None:
        self.settings, self.s3 = settings, s3
        self.env = env_for(stack, settings)
        self.ingestion = ObjectStore(s3, settings.ingestion_bucket)
        self.processed = ObjectStore(s3, settings.processed_bucket)
        init_warehouse(settings)
        self.facts: dict[str, set[Row]] = {}
        self.first = run_cycle(settings, s3).ingested.batch_id
        self.expect_current()
        self.day()
        self.second = run_cycle(settings, s3).ingested.batch_id
        self.expect_current()

    @property
    def source(self) -> str:
        return self.settings.totesys_db_url.reveal()  # type: ignore[union-attr]

    @property
    def warehouse(self) -> str:
        return self.settings.warehouse_db_url.reveal()  # type: ignore[union-attr]

    def day(self) -> None:
        simulate(self.source, SimulationPlan(days=1, seed=5))

    def doctor(self, *args: str, min_age: str = "0") -> subprocess.CompletedProcess[str]:
        return run_etl({**self.env, "DOCTOR_MIN_AGE_SECONDS": min_age}, "doctor", *args)

    def files(self, store: ObjectStore, batch: str) -> list[str]:
        manifest = store.get_json(layout.manifest_key(batch)) or {}
        return sorted(e["file"] for e in manifest["tables"].values() if e["file"])

    def sql(self, statement: sql.Composable | str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.warehouse) as conn:
            cursor = conn.execute(statement, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def counts(self) -> dict[str, int]:
        return {
            t: self.sql(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))[0][0]
            for t in WAREHOUSE_TABLES
        }

    def expect_current(self) -> None:
        """A batch has seen the source as it is now: its fact versions are expected."""
        for table, versions in current_fact_versions(self.source).items():
            self.facts.setdefault(table, set()).update(versions)

    def warehouse_is_expected(self) -> None:
        """Row for row what the source's history implies (the soak's own comparison)."""
        verdict = Verdict()
        lake = Lake(
            self.source,
            self.warehouse,
            self.s3,
            self.settings.ingestion_bucket,
            self.settings.processed_bucket,
        )
        check_warehouse(lake, self.facts, verdict)
        assert verdict.mismatches == 0, verdict.findings
