"""python -m etl ingest|transform|status  (load, run and init-warehouse follow)

Configured by the environment (TOTESYS_DB_URL, WAREHOUSE_DB_URL, INGESTION_BUCKET,
PROCESSED_BUCKET, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, credentials through boto3's own
chain, INGEST_OVERLAP_SECONDS, TOTESYS_TABLES); flags override. Exit 0 on success,
otherwise 1 with a one-line error on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from etl.config import Settings
from etl.errors import EtlError
from etl.ingest import ingest
from etl.logs import configure_cli_logging
from etl.status import ingestion_status
from etl.storage import ObjectStore, s3_client_from_settings
from etl.tables import select_tables
from etl.transform.batch import transform_pending


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m etl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    ingest_cmd = commands.add_parser(
        "ingest", help="extract changed rows of totesys to the ingestion bucket"
    )
    ingest_cmd.add_argument("--tables", help="comma-separated subset of the 11 tables")
    ingest_cmd.add_argument(
        "--full-refresh", action="store_true", help="ignore the watermarks of these tables"
    )
    ingest_cmd.add_argument(
        "--overlap-seconds", type=float, help="re-read window behind each watermark"
    )
    ingest_cmd.add_argument(
        "--batch-ts", type=datetime.fromisoformat, help="batch timestamp (tz-aware)"
    )
    transform_cmd = commands.add_parser(
        "transform", help="remodel pending ingestion batches into parquet"
    )
    transform_cmd.add_argument(
        "--batch-id", help="transform pending batches up to and including this one"
    )
    commands.add_parser("status", help="watermarks and the latest batches")
    return parser


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(env)
    if getattr(args, "tables", None):
        settings = replace(settings, tables=select_tables(args.tables.split(",")))
    if getattr(args, "overlap_seconds", None) is not None:
        settings = replace(settings, overlap=timedelta(seconds=args.overlap_seconds))
    return settings


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        settings = settings_from(args, os.environ if env is None else env)
        if args.command == "ingest":
            result = ingest(
                settings, s3_client_from_settings(settings), args.batch_ts, args.full_refresh
            )
            if result.skipped_reason:
                print(f"batch {result.batch_id}: nothing to do ({result.skipped_reason})")
            else:
                tables = result.manifest["tables"]
                changed = (
                    ", ".join(f"{t}={v['rows']}" for t, v in tables.items() if v["rows"])
                    or "no changes"
                )
                print(f"batch {result.batch_id}: {result.rows} rows ({changed})")
                print(f"manifest s3://{settings.ingestion_bucket}/{result.manifest_key}")
        elif args.command == "transform":
            transformed = transform_pending(
                settings, s3_client_from_settings(settings), args.batch_id
            )
            for batch in transformed:
                rows = ", ".join(f"{t}={n}" for t, n in batch.rows.items()) or "no changes"
                print(f"batch {batch.batch_id}: {rows}")
            if not transformed:
                print("no ingestion batch waiting to be transformed")
        elif args.command == "status":
            settings.require("ingestion_bucket")
            store = ObjectStore(s3_client_from_settings(settings), settings.ingestion_bucket)
            print("\n".join(ingestion_status(store)))
    except EtlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
