"""`python -m etl doctor [--repair]` itself: `examine` looks and checks with the settings'
buckets and warehouse, `repair_now` plans and repairs from a fresh look in one step (under
the caller's leases), and `run` prints the findings, repairs under every stage's lease,
extracts moved batches again and checks once more."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from etl import lease
from etl.config import SET_ASIDE, Settings
from etl.ingest.run import ingest
from etl.load.loader import connect_warehouse
from etl.load.target import Target
from etl.ops.doctor.checks import check
from etl.ops.doctor.inspect import look
from etl.ops.doctor.lake import Lake, Report, newest_batch
from etl.ops.doctor.repairs import RepairResult, plan, repair
from etl.storage import ObjectStore


def describe(report: Report) -> list[str]:
    """What the CLI prints: one line per broken invariant, then the notes."""
    return [*(f.line() for f in report.findings), *(f"note: {n}" for n in report.notes)]


def summary(lake: Lake, report: Report) -> str:
    if not report.healthy:
        return f"doctor: {len(report.findings)} broken invariant(s)"
    newest_processed = newest_batch(lake.processed.manifests)
    newest_loaded = newest_batch(lake.ledger)
    to_transform = [
        b for b in lake.ingestion.manifests if newest_processed is None or b > newest_processed
    ]
    to_load = [b for b in lake.processed.manifests if newest_loaded is None or b > newest_loaded]
    return (
        f"doctor: healthy: {len(lake.ingestion.manifests)} ingestion batch(es)"
        f" ({len(to_transform)} pending transform), {len(lake.processed.manifests)} processed"
        f" ({len(to_load)} pending load), {len(lake.ledger)} loaded"
    )


def examine(settings: Settings, s3_client: Any) -> tuple[Lake, Report]:
    settings.require("ingestion_bucket", "processed_bucket", "warehouse_db_url")
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    with connect_warehouse(settings) as conn:
        lake = look(
            ObjectStore(s3_client, settings.ingestion_bucket),
            ObjectStore(s3_client, settings.processed_bucket),
            conn,
            target,
        )
    return lake, check(lake, settings.doctor_min_age)


def repair_now(settings: Settings, s3_client: Any, say: Callable[[str], None]) -> RepairResult:
    """Check again, print the plan and perform it, as one step. The caller must hold the
    ingest, transform and load leases around this call: the plan is then made from a state
    no stage is changing, and nothing writes while it runs."""
    ingestion = ObjectStore(s3_client, settings.ingestion_bucket)
    processed = ObjectStore(s3_client, settings.processed_bucket)
    _, report = examine(settings, s3_client)
    actions = plan(report)
    say(f"repair plan: {len(actions)} step(s)" if actions else "repair plan: nothing safe")
    for action in actions:
        say(f"  - {action.describe()}")
    # rebuilt as set_aside, whatever the policy now: a batch committed under fail had no bad
    # row, so its output is the same; one committed under set_aside can only be so rebuilt
    return repair(actions, ingestion, processed, SET_ASIDE)


def run(settings: Settings, s3_client: Any, fix: bool, say: Callable[[str], None]) -> bool:
    """`python -m etl doctor [--repair]`: the findings, and with `fix` the plan, the repair
    and the findings after it. True when healthy (after the repair)."""
    lake, report = examine(settings, s3_client)
    for line in describe(report):
        say(line)
    if fix and not report.healthy:
        with ExitStack() as leases:  # no stage writes while the repair does
            for stage in ("ingest", "transform", "load"):
                leases.enter_context(lease.hold(lease.LeaseTerms.of(settings), stage))
            result = repair_now(settings, s3_client, say)
        for line in result.done:
            say(f"done: {line}")
        for line in result.skipped:
            say(f"skipped: {line}")
        if result.reextract:  # after the leases are released: ingest takes its own
            if settings.totesys_db_url:
                batch = ingest(settings, s3_client)
                say(
                    f"re-extracted the moved batches' changes as batch {batch.batch_id}:"
                    f" {batch.rows} rows"
                )
            else:
                say(
                    "the next ingest extracts the moved batches' changes again"
                    " (no TOTESYS_DB_URL here)"
                )
        lake, report = examine(settings, s3_client)
        say("after repair:")
        for line in describe(report):
            say(line)
    say(summary(lake, report))
    return report.healthy
