"""The debris checks (pure): no state snapshot of a batch other than the newest, no data
object no manifest references, no open multipart upload. Debris is judged by age: it may be
what a live stage is writing right now, so it counts only when older than `min_age`
(`Settings.doctor_min_age`); younger debris is reported as a note."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from etl.ops.doctor.lake import (
    ABORT_UPLOAD,
    DELETE_OBJECT,
    NOT_DATA,
    Action,
    Bucket,
    Finding,
    Lake,
    Report,
    StoredObject,
    examples,
    newest_batch,
)


def _age(min_age: timedelta) -> str:
    return f"{int(min_age.total_seconds())}s"


def check_stale_snapshots(lake: Lake, min_age: timedelta, report: Report) -> None:
    """No state snapshot is left but the newest processed batch's: an older one is garbage
    at any age, a newer one (its transform died before the manifest) once it is old."""
    bucket = lake.processed
    newest = newest_batch(bucket.manifests)
    stale: dict[str, list[StoredObject]] = {}
    young = 0
    for batch, objects in bucket.snapshots().items():
        if batch == newest:
            continue
        if newest is not None and batch < newest:
            stale[batch] = objects  # older than the state: garbage whatever its age
        elif all(lake.now - s.modified >= min_age for s in objects):
            stale[batch] = objects  # a batch whose transform died before its manifest
        else:
            young += 1
    if stale:
        report.add(
            Finding(
                "snapshots",
                f"s3://{bucket.name}: state snapshots of {len(stale)} batch(es) other than the"
                f" newest are left: {examples(stale)}",
                "a transform died before its tidy-up; --repair deletes them (the next transform"
                " would too)",
                len(stale),
                tuple(Action(DELETE_OBJECT, bucket.name, s.key) for o in stale.values() for s in o),
            )
        )
    if young:
        report.notes.append(
            f"s3://{bucket.name}: state snapshots of {young} batch(es) newer than the newest"
            f" processed batch are younger than {_age(min_age)}: a transform may be writing them"
        )


def check_orphans(bucket: Bucket[Any], now: datetime, min_age: timedelta, report: Report) -> None:
    """No data object outside the manifests (Athena/Glue read partitions, not manifests)."""
    referenced = bucket.referenced()
    unreferenced = [
        s for k, s in bucket.objects.items() if not k.startswith(NOT_DATA) and k not in referenced
    ]
    old = [s.key for s in unreferenced if now - s.modified >= min_age]
    young = len(unreferenced) - len(old)
    if young:
        report.notes.append(
            f"s3://{bucket.name}: {young} object(s) no manifest references are younger than"
            f" {_age(min_age)}, so not counted: a running stage may be writing them"
        )
    if not old:
        return
    if bucket.unreadable:
        actions: tuple[Action, ...] = ()
        advice = "not deleted while a manifest of the bucket is unreadable (it may name them)"
    else:
        actions = tuple(Action(DELETE_OBJECT, bucket.name, key) for key in sorted(old))
        advice = (
            "left by a stage that died (Athena/Glue would count their rows); --repair deletes them"
        )
    report.add(
        Finding(
            "orphans",
            f"s3://{bucket.name}: {len(old)} object(s) older than {_age(min_age)} that no manifest"
            f" references: {examples(old)}",
            advice,
            len(old),
            actions,
        )
    )


def check_uploads(bucket: Bucket[Any], now: datetime, min_age: timedelta, report: Report) -> None:
    """No multipart upload left open (they cost storage and are never visible)."""
    old = [u for u in bucket.uploads if now - u.initiated >= min_age]
    young = len(bucket.uploads) - len(old)
    if young:
        report.notes.append(
            f"s3://{bucket.name}: {young} open multipart upload(s) younger than {_age(min_age)},"
            " so not counted: a running stage may be writing them"
        )
    if old:
        report.add(
            Finding(
                "uploads",
                f"s3://{bucket.name}: {len(old)} multipart upload(s) open for longer than"
                f" {_age(min_age)}: {examples(u.key for u in old)}",
                "left by a stage that died; --repair aborts them",
                len(old),
                tuple(Action(ABORT_UPLOAD, bucket.name, u.key, u.upload_id) for u in old),
            )
        )
