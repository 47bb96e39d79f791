"""The state checks (pure): each stage's `_state/*.json` can be read and belongs to the
newest batch of its bucket, the newest processed batch's state snapshot is complete, and
the DAG's set-aside report cursor can be read. A stage recovers a state that is merely
behind by itself; --repair writes it now, and rebuilds what cannot be read."""

from __future__ import annotations

from etl import layout
from etl.ops.doctor.check_records import record_damage
from etl.ops.doctor.lake import (
    DELETE_OBJECT,
    REBUILD_TRANSFORM_STATE,
    SET_INGEST_STATE,
    SET_REPORT_CURSOR,
    WRITE_TRANSFORM_STATE,
    Action,
    Finding,
    Lake,
    Report,
    newest_batch,
)
from etl.transform.batch import REJECTED_SNAPSHOT, SNAPSHOT_PREFIX, snapshot_names
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY


def check_report_cursor(lake: Lake, report: Report) -> None:
    """The DAG's record of which batches' set-aside rows were emailed can be read."""
    if lake.report_cursor_damage:
        newest = newest_batch(lake.processed.manifests) or ""
        report.add(
            Finding(
                "report-cursor",
                lake.report_cursor_damage,
                "no set-aside rows are emailed while it stands (the runs go on); --repair"
                f" points it at the newest processed batch {newest or '(none)'}; `python -m etl"
                " status` still lists every open set-aside row",
                actions=(Action(SET_REPORT_CURSOR, lake.processed.name, newest),),
            )
        )


def check_ingest_state(lake: Lake, report: Report) -> None:
    """`_state/watermarks.json` is the state after the newest ingestion batch."""
    newest = newest_batch(lake.ingestion.manifests)
    bucket = lake.ingestion
    if bucket.state_damage:
        rebuilt = f"rewrites it from the manifest of the newest batch {newest}" if newest else (
            "removes it, so the next ingest is a full extract"
        )  # fmt: skip
        report.add(
            Finding(
                "ingest-state",
                bucket.state_damage,
                f"every ingest stops there; --repair {rebuilt}",
                actions=(Action(SET_INGEST_STATE, bucket.name, detail=newest or ""),),
            )
        )
        return
    if newest is None:
        if bucket.state is not None:
            report.add(
                Finding(
                    "ingest-state",
                    f"s3://{bucket.name}/{layout.STATE_KEY} exists but no ingestion batch does",
                    "the next ingest would continue from watermarks of a batch nobody has;"
                    " --repair removes the state, so the next ingest is a full extract",
                    actions=(Action(SET_INGEST_STATE, bucket.name),),
                )
            )
        return
    if bucket.state != bucket.manifests[newest]["state_after"]:
        state_batch = (bucket.state or {}).get("batch_id")
        advice = (
            "the next ingest recovers it from the manifest; --repair writes it now"
            if state_batch is None or state_batch < newest
            else "the next ingest would continue from a batch that has no manifest;"
            " --repair rewinds it to the newest batch"
        )
        report.add(
            Finding(
                "ingest-state",
                f"s3://{bucket.name}/{layout.STATE_KEY} is at batch {state_batch},"
                f" not the state after the newest batch {newest}",
                advice,
                actions=(Action(SET_INGEST_STATE, bucket.name, detail=newest),),
            )
        )


def check_transform_state(lake: Lake, report: Report) -> None:
    """The transform state belongs to the newest processed batch: `_state/transform.json`
    can be read and names it, and its snapshot is complete. (Snapshots of other batches
    left behind are debris: check_debris.check_stale_snapshots.)"""
    bucket = lake.processed
    newest = newest_batch(bucket.manifests)
    pointer = (bucket.state or {}).get("batch_id")
    if bucket.state_damage:
        report.add(_damaged_pointer(bucket.name, bucket.state_damage, newest))
        pointer = newest
    if newest is None:
        if pointer is not None:
            report.add(
                Finding(
                    "transform-state",
                    f"s3://{bucket.name}/{TRANSFORM_STATE_KEY} names batch {pointer} but there"
                    " is no processed batch",
                    "a processed manifest was removed; restore it from S3 versioning; not"
                    " repaired automatically",
                )
            )
        return
    finding = _incomplete_snapshot(lake, newest)
    if finding is None and pointer != newest:
        finding = Finding(
            "transform-state",
            f"s3://{bucket.name}/{TRANSFORM_STATE_KEY} is at batch {pointer}, not the"
            f" newest processed batch {newest}",
            "the next transform recovers it from the manifest; --repair writes it now",
            actions=(Action(WRITE_TRANSFORM_STATE, bucket.name, newest),),
        )
    if finding is not None:
        report.add(finding)


def _damaged_pointer(bucket: str, why: str, newest: str | None) -> Finding:
    """`_state/transform.json` cannot be read (`why`): point it at the newest batch, or
    remove it."""
    return Finding(
        "transform-state",
        why,
        "every transform stops there; --repair "
        + (f"points it at the newest processed batch {newest}" if newest else "removes it"),
        actions=(
            Action(WRITE_TRANSFORM_STATE, bucket, newest)
            if newest
            else Action(DELETE_OBJECT, bucket, TRANSFORM_STATE_KEY),
        ),
    )


def _incomplete_snapshot(lake: Lake, newest: str) -> Finding | None:
    """What the state snapshot of the newest processed batch lacks or cannot be read, if
    anything: rebuilt by replaying the transformed batches, unless their record is damaged."""
    bucket = lake.processed
    present = {s.key for s in bucket.snapshots().get(newest, [])}
    required = snapshot_names() + ([REJECTED_SNAPSHOT] if lake.snapshot_has_rejects else [])
    missing = [
        name for name in required if f"{SNAPSHOT_PREFIX}{newest}/{name}.parquet" not in present
    ] + [f"a readable s3://{bucket.name}/{key}" for key in bucket.damaged]
    if not missing:
        return None
    actions: tuple[Action, ...] = (Action(REBUILD_TRANSFORM_STATE, bucket.name, newest),)
    advice = (
        "transform fails every run ('transform state ... is incomplete'); --repair"
        " rebuilds it by replaying the transformed ingestion batches"
    )
    if record_damage(lake, newest):
        actions = ()
        advice = (
            "transform fails every run; it cannot be rebuilt while an ingestion batch is"
            " unreadable or has a broken file (see above); restore those first"
        )
    return Finding(
        "transform-state",
        f"the state snapshot of the newest processed batch {newest} lacks {', '.join(missing)}",
        advice,
        actions=actions,
    )
