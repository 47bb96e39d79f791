"""The main job on the embedded local default: `python -m devstack.demo` (`make demo`).

Starts the local stack in its own state directory, creates and seeds totesys, creates the
warehouse and runs the `totesys_etl` DAG end to end with `airflow dags test` (ingest ->
sensor -> transform -> load -> freshness). Then the simulated business runs for a day and
an address shared by counterparties is edited, the DAG runs again, and the summary shows
the rows per warehouse table, the changed rows found in the warehouse and the seconds from
change to warehouse. The stack is stopped at the end, so nothing is left running.
`--without-airflow` runs the same cycles through `python -m etl`'s code path instead.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devstack.airflow import airflow_env, dags_test, migrate
from devstack.stack import StackEndpoints, local_stack
from etl.config import Settings
from etl.ingest.run import IngestResult
from etl.load.loader import init_warehouse
from etl.ops.cycle import run_cycle
from etl.ops.freshness import measure
from etl.ops.reconcile import reconcile
from etl.storage import ObjectStore
from etl.warehouse import WAREHOUSE_TABLES
from simulator.seed import SeedPlan, seed_totesys, table_counts
from simulator.simulate import SimulationPlan, clock_now, simulate

DEMO_STATE_DIR = Path(".local/demo")


def totesys_summary(endpoints: StackEndpoints) -> str:
    with psycopg.connect(endpoints.totesys_db_url) as conn:
        counts = table_counts(conn)
        clock = clock_now(conn)
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE paid), count(*) FILTER (WHERE NOT paid) FROM payment"
        ).fetchone()
    assert row is not None
    width = max(len(table) for table in counts)
    lines = [f"  {table:<{width}} {count:>10,}" for table, count in counts.items()]
    lines.append(f"  payments paid / unpaid: {row[0]:,} / {row[1]:,}")
    lines.append(f"  totesys clock (newest change): {clock:%Y-%m-%d %H:%M:%S.%f}"[:-3])
    return "\n".join(lines)


def warehouse_summary(endpoints: StackEndpoints, settings: Settings) -> str:
    lines = []
    with psycopg.connect(endpoints.warehouse_db_url) as conn:
        for name in WAREHOUSE_TABLES:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
            ).fetchone()
            lines.append(f"  {name:<21} {row[0] if row else 0:>10,}")
    fresh = measure(settings)
    lines.append(f"  newest source change in the warehouse: {fresh.warehouse_newest}")
    lines.append(f"  behind source by {fresh.lag}")
    return "\n".join(lines)


def batch_summary(result: IngestResult, bucket: str) -> str:
    tables = result.manifest["tables"]
    changed = ", ".join(f"{t}={e['rows']:,}" for t, e in tables.items() if e["rows"])
    seconds = result.manifest["seconds"]
    return (
        f"  ingest: batch {result.batch_id}: {result.rows:,} rows in {seconds:.2f}s"
        f" ({changed or 'no changes'})\n  manifest s3://{bucket}/{result.manifest_key}"
    )


def cycle(settings: Settings, s3: Any, title: str) -> None:
    """One full cycle (ingest, transform, load), printed."""
    print(f"{title}:")
    result = run_cycle(settings, s3)
    print(batch_summary(result.ingested, settings.ingestion_bucket))
    for transformed in result.transformed:
        rows = ", ".join(f"{t}={n:,}" for t, n in transformed.rows.items()) or "nothing to change"
        print(f"  transform -> s3://{settings.processed_bucket}: {rows}")
    for loaded in result.loaded:
        counts = loaded.tables.items()
        inserted = ", ".join(f"{t}=+{c['inserted']:,}" for t, c in counts if c["inserted"])
        updated = ", ".join(f"{t}~{c['updated']:,}" for t, c in counts if c["updated"])
        changes = "; ".join(part for part in (inserted, updated) if part) or "no changes"
        print(f"  load -> warehouse in {loaded.seconds:.2f}s: {changes}")


def edit_shared_address(endpoints: StackEndpoints) -> tuple[int, list[int]]:
    """What a tutor might do mid-cohort: change an address several counterparties use."""
    with psycopg.connect(endpoints.totesys_db_url) as conn:
        row = conn.execute(
            "SELECT legal_address_id, array_agg(counterparty_id ORDER BY counterparty_id) FROM counterparty"
            " GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
        ).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE address SET address_line_1 = '1 Demo Quay', last_updated = ("
            "SELECT max(last_updated) FROM payment) + interval '1 second' WHERE address_id = %s",
            (row[0],),
        )
    return int(row[0]), list(row[1])


def changes_found(endpoints: StackEndpoints, address_id: int) -> str:
    with psycopg.connect(endpoints.warehouse_db_url) as conn:
        location = conn.execute(
            "SELECT address_line_1 FROM dim_location WHERE location_id = %s", (address_id,)
        ).fetchone()
        moved = conn.execute(
            "SELECT array_agg(counterparty_id ORDER BY counterparty_id) FROM dim_counterparty"
            " WHERE counterparty_legal_address_line_1 = '1 Demo Quay'"
        ).fetchone()
    line_1 = location[0] if location else None
    on_it = moved[0] if moved else []
    return f"dim_location {address_id} -> {line_1!r}; dim_counterparty on it: {on_it}"


def run_dag(env: dict[str, str], logical_date: datetime) -> None:
    started = time.monotonic()
    run = dags_test(env, logical_date.isoformat(), {"force_load": True})
    states = " ".join(f"{task}={state}" for task, state in run.task_states.items())
    print(f"  airflow dags test totesys_etl {logical_date:%Y-%m-%dT%H:%M}: "
          f"{'success' if run.succeeded else 'FAILED'} in {time.monotonic() - started:.0f}s ({states})")  # fmt: skip
    if not run.succeeded:
        raise SystemExit("the DAG run failed:\n" + run.output[-4000:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--state-dir", type=Path, default=DEMO_STATE_DIR)
    parser.add_argument("--without-airflow", action="store_true", help="run cycles without Airflow")
    args = parser.parse_args(argv)
    shutil.rmtree(args.state_dir, ignore_errors=True)  # a demo always starts from scratch

    started = time.monotonic()
    with local_stack(args.state_dir) as endpoints:
        print(f"local stack up in {time.monotonic() - started:.1f}s ({args.state_dir})")
        settings = Settings.from_env(endpoints.as_env())
        s3 = endpoints.s3_client()

        seeded = time.monotonic()
        seed_totesys(endpoints.totesys_db_url, SeedPlan(scale=args.scale))
        print(f"totesys seeded at scale {args.scale:g} in {time.monotonic() - seeded:.1f}s:")
        print(totesys_summary(endpoints))
        print(init_warehouse(settings))

        if args.without_airflow:
            cycle(settings, s3, "first cycle (full extract)")
            report = simulate(endpoints.totesys_db_url, SimulationPlan(days=1))
            print(report.summary())
            cycle(settings, s3, "next cycle (incremental: only the day's new and changed rows)")
            cycle(settings, s3, "again with nothing changed (manifest only, no data files)")
        else:
            env = airflow_env(endpoints, (args.state_dir / "airflow").resolve())
            migrate(env)
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            boundary = now - timedelta(minutes=now.minute % 15)
            print("first DAG run (full extract):")
            run_dag(env, boundary - timedelta(minutes=15))
            print(simulate(endpoints.totesys_db_url, SimulationPlan(days=1)).summary())
            address_id, counterparties = edit_shared_address(endpoints)
            print(
                f"edited address {address_id}, the legal address of counterparties {counterparties}"
            )
            changed = time.monotonic()
            print("next DAG run (incremental):")
            run_dag(env, boundary)
            print(f"change to warehouse: {time.monotonic() - changed:.0f}s")
            print(f"changed rows found in the warehouse: {changes_found(endpoints, address_id)}")

        print("totesys now:")
        print(totesys_summary(endpoints))
        print("warehouse now:")
        print(warehouse_summary(endpoints, settings))
        print("reconcile (python -m etl reconcile):")
        result = reconcile(
            settings,
            ObjectStore(s3, settings.ingestion_bucket),
            ObjectStore(s3, settings.processed_bucket),
        )
        for check in result.checks:
            print(f"  {check.describe()}")
        if not result.ok:
            raise SystemExit(f"the warehouse differs from the source in {result.differing}")
    print("local stack stopped; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
