"""python -m etl ingest|transform|load|run|init-warehouse|status|doctor|reconcile|replay

Configured by the environment (TOTESYS_DB_URL, WAREHOUSE_DB_URL, INGESTION_BUCKET,
PROCESSED_BUCKET, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, credentials through boto3's own
chain, INGEST_OVERLAP_SECONDS, TOTESYS_TABLES, WAREHOUSE_SCHEMA, WAREHOUSE_NAME_MAP,
SOURCE_TIMEZONE, METRICS_SINK (none|local|cloudwatch), METRICS_FILE, PIPELINE_ENVIRONMENT,
LEASE_WAIT_SECONDS, LEASE_TIMEOUT_SECONDS, BAD_ROW_POLICY (set_aside|fail)); flags override.

Exit codes (one-line error on stderr otherwise):
  0   success
  1   terminal: bad configuration or input (fix it; running again will fail the same way)
  69  transient: a service is down or failed (database, S3); retry with backoff
  75  another process of the same stage holds its lease (or took it over); retry later
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from etl.config import Settings
from etl.errors import EXIT_OK, EtlError, exit_code, one_line
from etl.ingest.run import IngestResult
from etl.ingest.window import add_window_arguments, window_from_arguments
from etl.load import ledger, too_large
from etl.load import waiting as waiting_facts
from etl.load.loader import LoadResult, connect_warehouse, init_warehouse, replay
from etl.logs import configure_cli_logging
from etl.ops import doctor
from etl.ops.cycle import run_cycle
from etl.ops.freshness import measure
from etl.ops.metrics import MetricsSink, read_local, sink_for, summary
from etl.ops.monitoring import monitored_ingest, monitored_load, monitored_transform
from etl.ops.reconcile import Reconciliation, reconcile
from etl.ops.status import (
    describe_delay,
    ingestion_status,
    load_set_aside_lines,
    pending_load,
    pending_transform,
    set_aside_lines,
    waiting_lines,
)
from etl.storage import ObjectStore, s3_client_from_settings
from etl.tables import select_tables
from etl.transform.batch import TransformResult, open_rejects
from etl.warehouse import WAREHOUSE_TABLES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m etl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("ingest", "extract changed rows of totesys to the ingestion bucket"),
                       ("run", "one full cycle: ingest, transform, load")):  # fmt: skip
        command = commands.add_parser(name, help=text)
        command.add_argument("--tables", help="comma-separated subset of the 11 tables")
        command.add_argument(
            "--full-refresh", action="store_true", help="ignore the watermarks of these tables"
        )
        command.add_argument(
            "--overlap-seconds", type=float, help="re-read window behind each watermark"
        )
        command.add_argument(
            "--batch-ts", type=datetime.fromisoformat, help="batch timestamp (tz-aware)"
        )
    add_window_arguments(commands.choices["ingest"])
    transform_cmd = commands.add_parser(
        "transform", help="remodel pending ingestion batches into parquet"
    )
    transform_cmd.add_argument(
        "--batch-id", help="transform pending batches up to and including this one"
    )
    commands.add_parser("load", help="load every processed batch not loaded yet into the warehouse")
    commands.add_parser("init-warehouse", help="create the warehouse schema where none exists")
    commands.add_parser("status", help="watermarks, latest batches, pending work and freshness")
    doctor_cmd = commands.add_parser(
        "doctor", help="check the pipeline's invariants; exit 1 if any is broken"
    )
    doctor_cmd.add_argument("--repair", action="store_true", help="then fix what is safe to fix")
    doctor_cmd.add_argument(
        "--min-age-seconds", type=float, help="debris younger than this may be a live writer's"
    )
    commands.add_parser(
        "reconcile", help="compare the warehouse with the source; exit 1 naming what differs"
    )
    replay_cmd = commands.add_parser(
        "replay", help="apply loaded processed batches to warehouse tables again (a repair)"
    )
    which = replay_cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--tables", dest="replay_tables", help="comma-separated warehouse tables")
    which.add_argument("--all", action="store_true", help="every warehouse table")
    replay_cmd.add_argument("--from", dest="from_batch", help="the first batch to apply again")
    return parser


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(env)
    if getattr(args, "tables", None):
        settings = replace(settings, tables=select_tables(args.tables.split(",")))
    if getattr(args, "min_age_seconds", None) is not None:
        settings = replace(settings, doctor_min_age=timedelta(seconds=args.min_age_seconds))
    if getattr(args, "overlap_seconds", None) is not None:
        settings = replace(settings, overlap=timedelta(seconds=args.overlap_seconds))
    return settings


def metrics_sink(settings: Settings) -> MetricsSink:
    """The sink the settings name; CloudWatch through boto3's own credential chain."""

    def cloudwatch() -> Any:
        import boto3

        return boto3.client(
            "cloudwatch", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
        )

    return sink_for(settings, cloudwatch)


def print_ingest(result: IngestResult, settings: Settings) -> None:
    if result.skipped_reason:
        print(f"batch {result.batch_id}: nothing to do ({result.skipped_reason})")
        return
    tables = result.manifest["tables"]
    changed = ", ".join(f"{t}={v['rows']}" for t, v in tables.items() if v["rows"]) or "no changes"
    print(f"batch {result.batch_id}: {result.rows} rows ({changed})")
    shown = result.manifest.get("window")
    if shown:
        print(f"window [{shown['since']}, {shown['until']}) re-read; watermarks left as they were")
    print(f"manifest s3://{settings.ingestion_bucket}/{result.manifest_key}")


def print_transform(results: list[TransformResult]) -> None:
    for batch in results:
        rows = ", ".join(f"{t}={n}" for t, n in batch.rows.items()) or "no changes"
        print(f"transformed {batch.batch_id}: {rows}")
        aside = batch.manifest["rejects"]
        if aside:
            counts = ", ".join(f"{t}={e['rows']}" for t, e in aside.items())
            print(f"  set aside (see `python -m etl status`): {counts}")
    if not results:
        print("no ingestion batch waiting to be transformed")


def print_load(results: list[LoadResult]) -> None:
    for batch in results:
        inserted = ", ".join(
            f"{t}=+{c['inserted']}" for t, c in batch.tables.items() if c["inserted"]
        )
        updated = ", ".join(f"{t}~{c['updated']}" for t, c in batch.tables.items() if c["updated"])
        held = ", ".join(f"{t}={c['waiting']}" for t, c in batch.tables.items() if c.get("waiting"))
        held = held and f"waiting for a dimension row: {held}"
        detail = "; ".join(part for part in (inserted, updated, held) if part) or "no changes"
        print(f"loaded {batch.batch_id} in {batch.seconds:.2f}s: {detail}")
    if not results:
        print("no processed batch waiting to be loaded")


def print_replay(results: list[LoadResult]) -> None:
    for batch in results:
        changed = ", ".join(
            f"{t}=+{c['inserted']}~{c['updated']}"
            for t, c in batch.tables.items()
            if c["inserted"] or c["updated"]
        )
        print(f"replayed {batch.batch_id}: {changed or 'already as the batch has it'}")
    print(f"replay: {len(results)} loaded batch(es) applied again; the ledger is unchanged")


def print_reconciliation(result: Reconciliation) -> int:
    print(f"reconcile: as of the last loaded batch {result.batch_id or '-'}")
    for check in result.checks:
        print(check.describe())
    if result.ok:
        return 0
    tables = ",".join(result.differing)
    print(f"error: the warehouse differs from the source in {tables};"
          f" `python -m etl replay --tables {tables}` applies the loaded batches to them again"
          " (docs/operations.md)", file=sys.stderr)  # fmt: skip
    return 1


def status_lines(settings: Settings, s3: Any) -> list[str]:
    settings.require("ingestion_bucket")
    ingestion = ObjectStore(s3, settings.ingestion_bucket)
    lines = ingestion_status(ingestion)
    if settings.metrics_sink == "local":
        lines += summary(read_local(Path(settings.metrics_file)), datetime.now(UTC))
    if settings.processed_bucket:
        processed = ObjectStore(s3, settings.processed_bucket)
        waiting = pending_transform(ingestion, processed)
        lines.append(
            f"pending transform: {len(waiting)} batch(es) {' '.join(waiting[:5])}".rstrip()
        )
        lines += set_aside_lines(open_rejects(processed))
        if settings.warehouse_db_url:
            with connect_warehouse(settings) as conn:
                ledger.ensure_ledger(conn)
                last = ledger.last_loaded(conn)
                parked = waiting_facts.counts(conn)
                too_large_rows = too_large.open_rows(conn)
            queued = pending_load(processed, last)
            lines.append(f"last loaded batch: {last or '-'}")
            lines.append(f"pending load: {len(queued)} batch(es) {' '.join(queued[:5])}".rstrip())
            lines += load_set_aside_lines(too_large_rows)
            lines += waiting_lines(parked)
    if settings.totesys_db_url and settings.warehouse_db_url:
        try:
            fresh = measure(settings)
        except EtlError as error:
            lines.append(f"freshness: unknown ({error})")
            return lines
        shown = (
            fresh.warehouse_newest.isoformat(sep=" ", timespec="milliseconds")
            if fresh.warehouse_newest
            else "-"
        )
        lines.append(
            f"freshness: newest change in warehouse {shown}; behind source by {describe_delay(fresh.lag)}"
        )
    return lines


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        settings = settings_from(args, os.environ if env is None else env)
        if args.command == "init-warehouse":
            print(init_warehouse(settings))
            return 0
        s3 = s3_client_from_settings(settings)
        sink = metrics_sink(settings)
        if args.command == "ingest":
            window = window_from_arguments(args, settings.source_zone)
            result = monitored_ingest(settings, s3, sink, args.batch_ts, args.full_refresh, window)
            print_ingest(result, settings)
        elif args.command == "transform":
            print_transform(monitored_transform(settings, s3, sink, args.batch_id))
        elif args.command == "load":
            print_load(monitored_load(settings, s3, sink))
        elif args.command == "run":
            cycle = run_cycle(settings, s3, args.batch_ts, args.full_refresh, sink)
            print_ingest(cycle.ingested, settings)
            print_transform(cycle.transformed)
            print_load(cycle.loaded)
        elif args.command == "status":
            print("\n".join(status_lines(settings, s3)))
        elif args.command == "doctor":
            return 0 if doctor.run(settings, s3, args.repair, print) else 1
        elif args.command == "replay":
            tables = (
                tuple(WAREHOUSE_TABLES)
                if args.all
                else tuple(t.strip() for t in args.replay_tables.split(",") if t.strip())
            )
            print_replay(replay(settings, s3, tables, args.from_batch))
        elif args.command == "reconcile":
            return print_reconciliation(
                reconcile(
                    settings,
                    ObjectStore(s3, settings.ingestion_bucket),
                    ObjectStore(s3, settings.processed_bucket)
                    if settings.processed_bucket
                    else None,
                )
            )
    except EtlError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_code(error)
    except psycopg.Error as error:  # a database fault no stage anticipated: still one line
        print(f"error: database: {one_line(error)}", file=sys.stderr)
        return exit_code(error)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
