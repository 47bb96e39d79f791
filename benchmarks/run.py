"""python -m benchmarks.run --scale 10   (make bench SCALE=10)

On a fresh local stack: seed totesys at the scale, then measure in one run

- the limits: raw `COPY (SELECT ...) TO STDOUT` of every source table (extract limit) and
  raw `COPY ... FROM STDIN` of the final warehouse rows into an empty copy of the warehouse
  (load limit);
- the full first cycle, stage by stage (each stage a `python -m etl` process, so its peak
  RSS is its own): wall seconds, rows/s, peak RSS;
- an incremental cycle after one simulated day, after a burst of 100 changed rows, and a
  cycle with no change at all (the fixed cost of a run: connections, leases, listings);
- ratios of each stage and of the whole cycle to its limit;
- `python -m etl reconcile` on the final warehouse, against the extract limit (its cost on
  the source is at most one scan of each table).

`--compare-with REF` measures the code at git REF the same way first, on a stack of its own,
in the same run (same machine, same minute), and the markdown gives both side by side: the
way to show a change costs no speed. Results go to benchmarks/results/ as JSON and a
markdown table. Timings are measured, never
asserted: the tests only check that this runs and writes well-formed results.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devstack.postgres import database_url
from devstack.stack import StackEndpoints, local_stack
from etl.config import Secret, Settings
from etl.load.loader import init_warehouse
from etl.load.target import Target
from etl.warehouse import WAREHOUSE_TABLES
from simulator.schema import TABLES
from simulator.seed import SeedPlan, seed_totesys
from simulator.simulate import SimulationPlan, simulate

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
RUNS = ("first_cycle", "incremental_one_day", "burst_100_rows", "no_change")


@dataclass(frozen=True)
class StageRun:
    stage: str
    seconds: float
    peak_rss_mb: float
    output: str


def run_stage(stage: str, env: Mapping[str, str], code: Path = REPO_ROOT) -> StageRun:
    """`python -m etl <stage>` of the code at `code`, in its own process; wall time and that
    process's peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "etl", stage], cwd=code, env={**env, "PYTHONPATH": str(code)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output = process.stdout.read().decode()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"etl {stage} failed: {output.strip()[-2000:]}")
    return StageRun(stage, seconds, usage.ru_maxrss / 1024, output)


def cycle(env: Mapping[str, str], code: Path) -> list[StageRun]:
    return [run_stage(stage, env, code) for stage in ("ingest", "transform", "load")]


def extract_limit(url: str) -> tuple[float, int]:
    """Raw COPY of every source table to nowhere: what reading totesys costs at best."""
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table in TABLES:
            query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT csv)").format(
                sql.Identifier(table)
            )
            with cur.copy(query) as copy:
                for _ in copy:
                    pass
            rows += cur.rowcount
    return time.perf_counter() - started, rows


def load_limit(settings: Settings, empty_url: str) -> tuple[float, int]:
    """Raw COPY FROM STDIN of the warehouse's final rows into an empty copy of it."""
    source = Target(settings.warehouse_schema, settings.warehouse_names)
    dumps = Path(tempfile.mkdtemp(prefix="bench-dump-"))  # on disk: the harness stays small
    assert settings.warehouse_db_url is not None
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn, conn.cursor() as cur:
        for table in WAREHOUSE_TABLES.values():
            query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
                source.columns(table), source.table(table.name)
            )
            with cur.copy(query) as copy, (dumps / table.name).open("wb") as out:
                for block in copy:
                    out.write(block)
    init_warehouse(Settings(warehouse_db_url=Secret(empty_url)))
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(empty_url) as conn, conn.cursor() as cur:
        for table in WAREHOUSE_TABLES.values():
            query = sql.SQL("COPY {} ({}) FROM STDIN").format(
                source.table(table.name), source.columns(table)
            )
            with cur.copy(query) as copy, (dumps / table.name).open("rb") as dump:
                while chunk := dump.read(1 << 20):
                    copy.write(chunk)
            rows += cur.rowcount
    shutil.rmtree(dumps, ignore_errors=True)
    return time.perf_counter() - started, rows


def burst(url: str, rows: int = 100) -> None:
    """The payment job pays `rows` payments at once (a burst of changed rows)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE payment SET paid = true, last_updated = clock_timestamp()::timestamp(3)"
            " WHERE payment_id IN (SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT %s)",
            (rows,),
        )


def extracted_rows(stage: StageRun) -> int:
    first = stage.output.split(" rows", 1)[0]
    return int(first.rsplit(" ", 1)[-1]) if ": " in first else 0


def benchmark(scale: float, state_dir: Path, code: Path = REPO_ROOT) -> dict[str, Any]:
    with local_stack(state_dir) as endpoints:
        env = {**os.environ, **endpoints.as_env()}
        settings = Settings.from_env(endpoints.as_env())
        seeded = time.perf_counter()
        counts = seed_totesys(endpoints.totesys_db_url, SeedPlan(scale=scale))
        seed_seconds = time.perf_counter() - seeded
        init_warehouse(settings)

        limit_extract, source_rows = extract_limit(endpoints.totesys_db_url)
        first = cycle(env, code)
        simulate(endpoints.totesys_db_url, SimulationPlan(days=1))
        one_day = cycle(env, code)
        burst(endpoints.totesys_db_url)
        hundred = cycle(env, code)
        quiet = cycle(env, code)
        reconciled = run_stage("reconcile", env, code)
        # last: a stage forked after it would count this process's pages in its peak RSS
        copy_url = _new_database(endpoints, "warehouse_copy")
        limit_load, warehouse_rows = load_limit(settings, copy_url)

    total = sum(s.seconds for s in first)
    limits = limit_extract + limit_load
    return {
        "scale": scale,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seed": {"seconds": round(seed_seconds, 2), "rows": sum(counts.values())},
        "limits": {
            "extract_copy_seconds": round(limit_extract, 3), "extract_rows": source_rows,
            "load_copy_seconds": round(limit_load, 3), "load_rows": warehouse_rows,
        },
        "first_cycle": {
            "stages": [_stage(s, source_rows if s.stage == "ingest" else warehouse_rows) for s in first],
            "seconds": round(total, 3),
            "ratio_to_limits": round(total / limits, 2),
            "ingest_ratio_to_extract_limit": round(first[0].seconds / limit_extract, 2),
            "load_ratio_to_load_limit": round(first[2].seconds / limit_load, 2),
        },
        "incremental_one_day": {"stages": [_stage(s, extracted_rows(one_day[0])) for s in one_day],
                                "seconds": round(sum(s.seconds for s in one_day), 3)},
        "burst_100_rows": {"stages": [_stage(s, extracted_rows(hundred[0])) for s in hundred],
                           "seconds": round(sum(s.seconds for s in hundred), 3)},
        "no_change": {"stages": [_stage(s, 0) for s in quiet],
                      "seconds": round(sum(s.seconds for s in quiet), 3)},
        "reconcile": {**_stage(reconciled, source_rows),
                      "ratio_to_extract_limit": round(reconciled.seconds / limit_extract, 2)},
    }  # fmt: skip


def _stage(run: StageRun, rows: int) -> dict[str, Any]:
    return {
        "stage": run.stage,
        "seconds": round(run.seconds, 3),
        "rows": rows,
        "rows_per_second": round(rows / run.seconds) if run.seconds else None,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
    }


def _new_database(endpoints: StackEndpoints, name: str) -> str:
    admin = database_url(endpoints.pg_password, endpoints.pg_port, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(endpoints.pg_password, endpoints.pg_port, name)


def markdown(result: dict[str, Any]) -> str:
    limits, first = result["limits"], result["first_cycle"]
    lines = [
        f"Scale {result['scale']:g} ({result['seed']['rows']:,} source rows), measured {result['measured_at']} on "
        f"{result['machine']['cpus']} CPUs, {result['machine']['platform']}, Python {result['machine']['python']}.",
        "",
        "| run | stage | seconds | rows | rows/s | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in (run for run in RUNS if run in result):
        for s in result[run]["stages"]:
            lines.append(f"| {run} | {s['stage']} | {s['seconds']:.2f} | {s['rows']:,} | "
                         f"{s['rows_per_second'] or 0:,} | {s['peak_rss_mb']:.0f} |")  # fmt: skip
        lines.append(f"| {run} | **total** | **{result[run]['seconds']:.2f}** | | | |")
    lines += [
        "",
        f"Limits: raw COPY out of every source table {limits['extract_copy_seconds']:.2f}s; raw COPY of the "
        f"final warehouse rows into an empty warehouse {limits['load_copy_seconds']:.2f}s.",
        f"Ratios: first cycle / (extract + load limits) = **{first['ratio_to_limits']}x**; ingest / extract "
        f"limit = {first['ingest_ratio_to_extract_limit']}x; load / load limit = {first['load_ratio_to_load_limit']}x.",
    ]
    if "reconcile" in result:
        check = result["reconcile"]
        lines.append(
            f"Reconcile (`python -m etl reconcile`, every table): {check['seconds']:.2f}s, peak RSS "
            f"{check['peak_rss_mb']:.0f} MB, {check['ratio_to_extract_limit']}x the extract limit."
        )
    if "baseline" in result:
        lines += ["", *_comparison(result, result["baseline"])]
    return "\n".join(lines) + "\n"


def _comparison(result: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """This code against the code at the baseline's ref, measured in the same run."""
    lines = [
        f"Against `{baseline['ref']}` ({baseline['commit']}), measured in the same run just before"
        " on a stack of its own:",
        "",
        f"| run | this code s | {baseline['commit']} s | change |",
        "| --- | ---: | ---: | ---: |",
    ]
    for run in (run for run in RUNS if run in result and run in baseline["result"]):
        now, before = result[run]["seconds"], baseline["result"][run]["seconds"]
        lines.append(f"| {run} | {now:.2f} | {before:.2f} | {now / before - 1:+.0%} |")
    ratio, ratio_before = (
        r["first_cycle"]["ratio_to_limits"] for r in (result, baseline["result"])
    )
    lines.append(f"| first cycle / limits | {ratio}x | {ratio_before}x | |")
    return lines


def code_at(ref: str, into: Path) -> tuple[Path, str]:
    """The tracked files of git `ref`, extracted into `into`, and the ref's short commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO_ROOT,
                             capture_output=True, check=True).stdout  # fmt: skip
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into, commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--compare-with", metavar="REF", default="",
                        help="also measure the code at this git ref, first, in the same run")  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as state:
        baseline = None
        if args.compare_with:
            code, commit = code_at(args.compare_with, Path(state) / "baseline-code")
            before = benchmark(args.scale, Path(state) / "baseline-stack", code)
            baseline = {"ref": args.compare_with, "commit": commit, "result": before}
        result = benchmark(args.scale, Path(state) / "stack")
    if baseline is not None:
        result["baseline"] = baseline
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"scale-{args.scale:g}"
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.results / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
