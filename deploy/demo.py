"""The main job on the embedded local default: `python -m deploy.demo` (`make demo`).

Starts the local stack in its own state directory, creates and seeds totesys, creates the
warehouse, runs a full cycle (ingest -> transform -> load), lets the simulated business run
for a day, runs the incremental cycle and an empty one, prints what each stage did and
what the warehouse holds, and stops the stack so nothing is left running.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from deploy.local.stack import StackEndpoints, local_stack
from deploy.totesys.seed import SeedPlan, seed_totesys, table_counts
from deploy.totesys.simulate import SimulationPlan, clock_now, simulate
from etl.config import Settings
from etl.freshness import measure
from etl.ingest import IngestResult
from etl.load.loader import init_warehouse
from etl.pipeline import run_cycle
from etl.warehouse import WAREHOUSE_TABLES

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--state-dir", type=Path, default=DEMO_STATE_DIR)
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

        cycle(settings, s3, "first cycle (full extract)")
        report = simulate(endpoints.totesys_db_url, SimulationPlan(days=1))
        print(report.summary())
        cycle(settings, s3, "next cycle (incremental: only the day's new and changed rows)")
        cycle(settings, s3, "again with nothing changed (manifest only, no data files)")

        print("totesys now:")
        print(totesys_summary(endpoints))
        print("warehouse now:")
        print(warehouse_summary(endpoints, settings))
    print("local stack stopped; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
