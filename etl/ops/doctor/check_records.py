"""The record checks (pure): every manifest can be read, every file a manifest references
is there as recorded, the manifests of each bucket form one chain, and every ingestion
batch is transformed or still pending. The ingestion bucket is the record; the processed
bucket is derived from it, so a broken processed batch is rebuilt (`rederivable`) while a
broken ingestion batch is moved aside only when nothing was derived from it yet."""

from __future__ import annotations

from typing import Any

from etl import layout
from etl.ops.doctor.lake import (
    QUARANTINE_BATCH,
    REDERIVE_BATCH,
    SET_INGEST_STATE,
    Action,
    Bucket,
    Finding,
    Lake,
    Report,
    examples,
    newest_batch,
    unreadable_batches,
)


def check_readable(lake: Lake, report: Report) -> None:
    """Every manifest of both buckets can be read by this code."""
    for key, why in lake.ingestion.unreadable.items():
        report.add(
            Finding(
                "manifest-unreadable",
                why,
                f"the stage reading s3://{lake.ingestion.name}/{key} stops there; it is the record"
                " of a batch: run the pipeline version that wrote it, or restore the object"
                " from S3 versioning; not repaired automatically",
            )
        )
    for key, why in lake.processed.unreadable.items():
        batch = layout.batch_id_of_manifest(key)
        report.add(rederivable(lake, "manifest-unreadable", why, batch, "load stops there"))


def record_damage(lake: Lake, up_to: str) -> list[str]:
    """The ingestion manifests and files up to batch `up_to` that cannot be read: the
    processed side cannot be rebuilt past them."""
    return [
        f"s3://{lake.ingestion.name}/{k}"
        for k in lake.ingestion.unreadable
        if layout.batch_id_of_manifest(k) <= up_to
    ] + [
        f"s3://{lake.ingestion.name}/{k}"
        for k, (b, _) in broken_files(lake.ingestion).items()
        if b <= up_to
    ]


def rederivable(lake: Lake, check: str, problem: str, batch: str, effect: str) -> Finding:
    """A finding about processed batch `batch`, which --repair rebuilds from the ingestion
    bucket unless the record it is built from is damaged too."""
    damaged = record_damage(lake, batch)
    # a loaded batch without its manifest is rebuilt too (its own ledger finding)
    processed = set(lake.processed.manifests) | unreadable_batches(lake.processed)
    processed |= set(lake.ledger)
    gaps = [b for b in lake.ingestion.manifests if b < batch and b not in processed]
    if gaps and not damaged:
        return Finding(
            check,
            problem,
            f"{effect}; it cannot be rebuilt while ingestion batch(es) before it have no"
            f" processed batch ({examples(gaps)}: their state is not known; see the"
            " transform-gap line)",
        )
    if damaged:
        return Finding(
            check,
            problem,
            f"{effect}; it cannot be rebuilt while the ingestion batches it is derived from"
            f" are damaged ({examples(damaged)}): restore those from S3 versioning first",
        )
    return Finding(
        check,
        problem,
        f"{effect}; --repair rebuilds it from the ingestion bucket (the processed bucket is"
        " derived from it)",
        actions=(Action(REDERIVE_BATCH, lake.processed.name, batch),),
    )


def broken_files(bucket: Bucket[Any]) -> dict[str, tuple[str, str]]:
    """key -> (batch id, what is wrong) for every referenced file that is missing or differs
    from the size and sha256 its manifest recorded."""
    broken = {}
    for key, (batch, size, sha256) in sorted(bucket.referenced().items()):
        stored = bucket.objects.get(key)
        if stored is None:
            broken[key] = (batch, "is missing")
        elif stored.size != size or bucket.sha256.get(key) != sha256:
            broken[key] = (batch, "does not match its manifest (size or sha256)")
    return broken


def check_files(lake: Lake, report: Report) -> None:
    """Every file a manifest references is there with its recorded size and sha256."""
    newest_processed = newest_batch(lake.processed.manifests)
    pending_findings: dict[str, int] = {}  # broken pending batch -> index of its first finding
    for key, (batch, what) in broken_files(lake.ingestion).items():
        problem = f"s3://{lake.ingestion.name}/{key} of ingestion batch {batch} {what}"
        pending = newest_processed is None or batch > newest_processed
        if pending:
            pending_findings.setdefault(batch, len(report.findings))
            advice = (
                "transform fails on this batch every run; --repair moves the batch aside"
                " and extracts its changes again as a new batch"
            )
        else:
            advice = (
                "the batch is already transformed, so the pipeline does not need the file,"
                " but it is the record: Athena/Glue readers miss its rows and no processed"
                " batch up to it can be rebuilt; restore it from S3 versioning or a backup"
                " (nothing else holds the rows as extracted); not repaired automatically"
            )
        report.add(Finding("file", problem, advice))
    for key, (batch, what) in broken_files(lake.processed).items():
        problem = f"s3://{lake.processed.name}/{key} of processed batch {batch} {what}"
        effect = (
            "Athena/Glue readers miss its rows"
            if batch in lake.ledger
            else "load fails on this batch every run"
        )
        report.add(rederivable(lake, "file", problem, batch, effect))
    if pending_findings:
        _move_aside_from(lake, report, pending_findings)


def _move_aside_from(lake: Lake, report: Report, pending_findings: dict[str, int]) -> None:
    """Give the first broken pending batch's finding the actions that move aside it and
    every batch after it (none of them is transformed) and rewind the watermarks to the
    batch before: the next ingest extracts all their changes again under a new batch id."""
    first = min(pending_findings)
    before = [b for b in lake.ingestion.manifests if b < first]
    where = lake.ingestion.name
    actions = [Action(QUARANTINE_BATCH, where, b) for b in lake.ingestion.manifests if b >= first]
    actions.append(Action(SET_INGEST_STATE, where, detail=before[-1] if before else ""))
    index = pending_findings[first]
    finding = report.findings[index]
    report.findings[index] = Finding(
        finding.check, finding.problem, finding.advice, 1, tuple(actions)
    )


def check_chain(name: str, bucket: Bucket[Any], report: Report) -> None:
    """Each manifest names the batch before it: none was removed or written out of order.
    A batch whose manifest cannot be read still counts (it has its own finding)."""
    before = None
    unreadable = unreadable_batches(bucket)
    for batch in sorted(set(bucket.manifests) | unreadable):
        manifest = bucket.manifests.get(batch)
        if manifest is not None and manifest["previous_batch_id"] != before:
            report.add(
                Finding(
                    "chain",
                    f"{name} manifest {batch} follows {manifest['previous_batch_id']}, not {before}",
                    "a manifest was removed, restored or written out of order; a lost processed"
                    " manifest of a loaded batch is rebuilt by --repair (the ledger line names"
                    " it), an ingestion manifest is the record: restore it from S3 versioning",
                )
            )
        before = batch


def check_transformed(lake: Lake, report: Report) -> None:
    """Every ingestion batch is transformed or still pending (newer than the newest
    processed batch); every processed batch comes from an ingestion batch."""
    ingested = set(lake.ingestion.manifests) | unreadable_batches(lake.ingestion)
    processed = set(lake.processed.manifests) | unreadable_batches(lake.processed)
    newest = newest_batch(processed)
    skipped = {b for b in ingested - processed if newest is not None and b < newest}
    if skipped:
        report.add(
            Finding(
                "transform-gap",
                f"{len(skipped)} ingestion batch(es) older than the newest processed batch"
                f" {newest} were never transformed: {examples(skipped)}",
                "transform only takes batches after its state, so their changes never reach the"
                " warehouse; run `python -m etl run --full-refresh`; not repaired automatically",
                len(skipped),
            )
        )
    strays = processed - ingested
    if strays:
        report.add(
            Finding(
                "transform-gap",
                f"{len(strays)} processed batch(es) without an ingestion batch: {examples(strays)}",
                "an ingestion manifest was removed; restore it from S3 versioning; not repaired"
                " automatically",
                len(strays),
            )
        )
