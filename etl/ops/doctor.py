"""`python -m etl doctor [--repair]`: are the buckets, the ledger and the warehouse in a
state every later run can build on, and if not, what to do.

Three layers, so the soak's verdict and the CLI share one implementation:

- `look` (thin adapter): reads what the two buckets and the warehouse hold into a `Lake`
  (manifests through their typed readers, every object with its size, age and, when a
  manifest references it, its sha256; open multipart uploads; the two state objects; the
  load ledger; duplicated warehouse keys).
- `check` (pure): the invariants over a `Lake`, one `Finding` per broken invariant, each
  with what to do and the repair actions that are safe.
- `plan` / `repair`: the actions of the findings, in a safe order, and a function that
  performs them. Repair never deletes or updates a warehouse row and never deletes an
  object a manifest under `_manifests/` references. It must not run while a stage writes:
  `repair_now` checks again, plans and repairs in one step, and the caller holds every
  stage's lease around that call (see docs/operations.md).

Debris is judged by age: an object no manifest references, or an open multipart upload,
may be what a live stage is writing right now, so it counts only when older than
`Settings.doctor_min_age` (default an hour); younger ones are reported as a note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from etl import bookkeeping, layout, lease
from etl.config import SET_ASIDE, Settings
from etl.errors import DamagedObjectError, EtlError, StorageError
from etl.ingest.run import ingest
from etl.load.loader import connect_warehouse
from etl.load.target import Target
from etl.logs import log_event
from etl.manifests import ManifestFormatError
from etl.manifests import ingestion as ingestion_manifest
from etl.manifests import processed as processed_manifest
from etl.manifests.ingestion import IngestionManifest
from etl.manifests.processed import ProcessedManifest
from etl.storage import ObjectStore
from etl.transform.batch import (
    REJECTED_SNAPSHOT,
    SNAPSHOT_PREFIX,
    build_batch,
    parquet_bytes,
    read_parquet,
    snapshot_names,
    snapshot_tables,
    writes_rejects,
)
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from etl.transform.rederive import rederive
from etl.transform.rejects_area import REPORTED_KEY, read_cursor
from etl.transform.remodel import TransformState
from etl.warehouse import WAREHOUSE_TABLES

logger = logging.getLogger("etl.ops.doctor")

Connection = psycopg.Connection[tuple[Any, ...]]
M = TypeVar("M", IngestionManifest, ProcessedManifest)

QUARANTINE_PREFIX = "_quarantine/"
NOT_DATA = (layout.MANIFEST_PREFIX, "_state/", QUARANTINE_PREFIX)
SHOWN = 3  # examples per line

# repair actions
ABORT_UPLOAD = "abort_upload"
QUARANTINE_BATCH = "quarantine_batch"
SET_INGEST_STATE = "set_ingest_state"
WRITE_TRANSFORM_STATE = "write_transform_state"
REBUILD_TRANSFORM_STATE = "rebuild_transform_state"
REDERIVE_BATCH = "rederive_batch"
SET_REPORT_CURSOR = "set_report_cursor"
DELETE_OBJECT = "delete_object"
ORDER = (
    ABORT_UPLOAD,
    QUARANTINE_BATCH,
    SET_INGEST_STATE,
    REDERIVE_BATCH,
    REBUILD_TRANSFORM_STATE,
    WRITE_TRANSFORM_STATE,
    SET_REPORT_CURSOR,
    DELETE_OBJECT,
)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class OpenUpload:
    key: str
    upload_id: str
    initiated: datetime


@dataclass
class Bucket(Generic[M]):
    """What one bucket holds, as the checks need it."""

    name: str
    manifests: dict[str, M]  # batch id -> manifest, in batch order
    unreadable: dict[str, str]  # manifest key -> why it cannot be read
    objects: dict[str, StoredObject]  # every object, by key
    sha256: dict[str, str]  # digest of every present object a manifest references
    uploads: list[OpenUpload]
    state: Any  # the stage's `_state/*.json` document, None when absent or damaged
    state_damage: str | None = None  # why that document cannot be read, when it cannot
    damaged: dict[str, str] = field(default_factory=dict)  # snapshot key -> why unreadable

    def referenced(self) -> dict[str, tuple[str, int, str | None]]:
        """key -> (batch id, size, sha256) recorded by the manifest naming it."""
        found: dict[str, tuple[str, int, str | None]] = {}
        for batch, manifest in self.manifests.items():
            for entry in file_entries(manifest):
                if entry["file"]:
                    found[entry["file"]] = (batch, entry["bytes"], entry["sha256"])
        return found


def file_entries(manifest: Mapping[str, Any]) -> list[Any]:
    """A manifest's file entries: its tables' and (processed) the set-aside rows'."""
    return [*manifest["tables"].values(), *(manifest.get("rejects") or {}).values()]


@dataclass
class Lake:
    ingestion: Bucket[IngestionManifest]
    processed: Bucket[ProcessedManifest]
    ledger: list[str]  # batch ids in the order they were loaded
    duplicate_keys: dict[str, int]  # warehouse table -> rows beyond the first per key (-1: absent)
    now: datetime
    report_cursor_damage: str = ""  # why _state/rejects_reported.json cannot be read, if so
    # the newest processed batch was written by a release that sets rows aside, so its
    # snapshot must hold the open set-aside rows too
    snapshot_has_rejects: bool = False


@dataclass(frozen=True)
class Action:
    """One safe repair step."""

    kind: str
    bucket: str
    key: str = ""  # the object, or the batch id for batch-level actions
    detail: str = ""  # the upload id; the batch a state is set to ("" for none)

    def describe(self) -> str:
        where = f"s3://{self.bucket}"
        return {
            ABORT_UPLOAD: f"abort the multipart upload of {where}/{self.key}",
            QUARANTINE_BATCH: f"move ingestion batch {self.key} (manifest and files) to "
            f"{where}/{QUARANTINE_PREFIX}{self.key}/ so its changes are extracted again",
            SET_INGEST_STATE: f"set {where}/{layout.STATE_KEY} to the state after "
            + (f"batch {self.detail}" if self.detail else "no batch (the next ingest is full)"),
            REBUILD_TRANSFORM_STATE: f"rebuild the transform state of batch {self.key} by "
            "replaying the transformed ingestion batches",
            WRITE_TRANSFORM_STATE: f"point {where}/{TRANSFORM_STATE_KEY} at batch {self.key}",
            REDERIVE_BATCH: f"rebuild processed batch {self.key} (its broken files and manifest)"
            " from the ingestion bucket",
            SET_REPORT_CURSOR: f"point {where}/{REPORTED_KEY} at batch {self.key} (set-aside"
            " rows of batches up to it are not emailed again)",
            DELETE_OBJECT: f"delete {where}/{self.key}",
        }[self.kind]


@dataclass(frozen=True)
class Finding:
    """One broken invariant: what is wrong, what to do, and what --repair does about it."""

    check: str
    problem: str
    advice: str
    count: int = 1
    actions: tuple[Action, ...] = ()

    def line(self) -> str:
        return f"{self.check}: {self.problem}; {self.advice}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not a problem, but worth saying

    @property
    def healthy(self) -> bool:
        return not self.findings

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)


def _examples(items: Iterable[str]) -> str:
    shown = sorted(items)
    more = f" and {len(shown) - SHOWN} more" if len(shown) > SHOWN else ""
    return ", ".join(shown[:SHOWN]) + more


# ---------------------------------------------------------------- the checks (pure)


def check(lake: Lake, min_age: timedelta) -> Report:
    """Every invariant over what `look` saw; `min_age` is how old debris must be to count."""
    report = Report()
    buckets: tuple[Bucket[Any], ...] = (lake.ingestion, lake.processed)
    check_readable(lake, report)
    check_files(lake, report)
    check_chain("ingestion", lake.ingestion, report)
    check_chain("processed", lake.processed, report)
    check_transformed(lake, report)
    check_ledger(lake, report)
    check_report_cursor(lake, report)
    check_ingest_state(lake, report)
    check_transform_state(lake, min_age, report)
    for bucket in buckets:
        check_orphans(bucket, lake.now, min_age, report)
        check_uploads(bucket, lake.now, min_age, report)
    check_version_keys(lake, report)
    return report


def check_readable(lake: Lake, report: Report) -> None:
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
    processed = set(lake.processed.manifests) | _unreadable_batches(lake.processed)
    processed |= set(lake.ledger)
    gaps = [b for b in lake.ingestion.manifests if b < batch and b not in processed]
    if gaps and not damaged:
        return Finding(
            check,
            problem,
            f"{effect}; it cannot be rebuilt while ingestion batch(es) before it have no"
            f" processed batch ({_examples(gaps)}: their state is not known; see the"
            " transform-gap line)",
        )
    if damaged:
        return Finding(
            check,
            problem,
            f"{effect}; it cannot be rebuilt while the ingestion batches it is derived from"
            f" are damaged ({_examples(damaged)}): restore those from S3 versioning first",
        )
    return Finding(
        check,
        problem,
        f"{effect}; --repair rebuilds it from the ingestion bucket (the processed bucket is"
        " derived from it)",
        actions=(Action(REDERIVE_BATCH, lake.processed.name, batch),),
    )


def _newest(ids: Iterable[str]) -> str | None:
    return max(ids, default=None)


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
    transformed, loaded = set(lake.processed.manifests), set(lake.ledger)
    newest_processed = _newest(transformed)
    pending_findings: dict[str, int] = {}  # broken pending batch -> index of its first finding
    sides: tuple[tuple[str, Bucket[Any], set[str]], ...] = (
        ("ingestion", lake.ingestion, transformed),
        ("processed", lake.processed, loaded),
    )
    for name, bucket, downstream in sides:
        for key, (batch, what) in broken_files(bucket).items():
            problem = f"s3://{bucket.name}/{key} of {name} batch {batch} {what}"
            if name == "processed":
                effect = (
                    "Athena/Glue readers miss its rows"
                    if batch in downstream
                    else "load fails on this batch every run"
                )
                report.add(rederivable(lake, "file", problem, batch, effect))
                continue
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
    if pending_findings:
        # move aside the first broken pending batch and every batch after it (none of them is
        # transformed) and rewind the watermarks to the batch before: the next ingest
        # extracts all their changes again under a new batch id
        first = min(pending_findings)
        before = [b for b in lake.ingestion.manifests if b < first]
        where = lake.ingestion.name
        actions = [
            Action(QUARANTINE_BATCH, where, b) for b in lake.ingestion.manifests if b >= first
        ]
        actions.append(Action(SET_INGEST_STATE, where, detail=before[-1] if before else ""))
        index = pending_findings[first]
        finding = report.findings[index]
        report.findings[index] = Finding(
            finding.check, finding.problem, finding.advice, 1, tuple(actions)
        )


def _unreadable_batches(bucket: Bucket[Any]) -> set[str]:
    return {layout.batch_id_of_manifest(key) for key in bucket.unreadable}


def check_chain(name: str, bucket: Bucket[Any], report: Report) -> None:
    """Each manifest names the batch before it: none was removed or written out of order.
    A batch whose manifest cannot be read still counts (it has its own finding)."""
    before = None
    unreadable = _unreadable_batches(bucket)
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
    ingested = set(lake.ingestion.manifests) | _unreadable_batches(lake.ingestion)
    processed = set(lake.processed.manifests) | _unreadable_batches(lake.processed)
    newest = _newest(processed)
    skipped = {b for b in ingested - processed if newest is not None and b < newest}
    if skipped:
        report.add(
            Finding(
                "transform-gap",
                f"{len(skipped)} ingestion batch(es) older than the newest processed batch"
                f" {newest} were never transformed: {_examples(skipped)}",
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
                f"{len(strays)} processed batch(es) without an ingestion batch: {_examples(strays)}",
                "an ingestion manifest was removed; restore it from S3 versioning; not repaired"
                " automatically",
                len(strays),
            )
        )


def check_report_cursor(lake: Lake, report: Report) -> None:
    """The DAG's record of which batches' set-aside rows were emailed can be read."""
    if lake.report_cursor_damage:
        newest = _newest(lake.processed.manifests) or ""
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


def check_ledger(lake: Lake, report: Report) -> None:
    """The ledger holds processed batches only, in batch order, and none was skipped."""
    processed, loaded = set(lake.processed.manifests), lake.ledger
    unknown = (
        set(loaded)
        - processed
        - {layout.batch_id_of_manifest(k) for k in lake.processed.unreadable}
    )
    for batch in sorted(unknown):
        problem = f"loaded batch {batch} has no processed manifest"
        if batch in lake.ingestion.manifests:
            report.add(rederivable(lake, "ledger", problem, batch, "its files are not listed"))
        else:
            report.add(
                Finding(
                    "ledger",
                    problem + " and no ingestion batch",
                    "the record of a loaded batch is gone; restore its ingestion manifest from"
                    " S3 versioning, then --repair rebuilds the processed one (doctor never"
                    " deletes warehouse rows)",
                )
            )
    if loaded != sorted(loaded):
        report.add(
            Finding(
                "ledger",
                "the ledger was not written in batch order",
                "an older batch was loaded after a newer one, so a dimension may hold an older"
                " value; `python -m etl run --full-refresh` rewrites the current values",
            )
        )
    newest = _newest(loaded)
    skipped = {b for b in processed - set(loaded) if newest is not None and b < newest}
    if skipped:
        report.add(
            Finding(
                "ledger",
                f"{len(skipped)} processed batch(es) older than the newest loaded batch {newest}"
                f" were never loaded: {_examples(skipped)}",
                "load only takes batches after the newest in the ledger, so their rows are not in"
                " the warehouse; run `python -m etl run --full-refresh`; not repaired"
                " automatically",
                len(skipped),
            )
        )


def check_ingest_state(lake: Lake, report: Report) -> None:
    """`_state/watermarks.json` is the state after the newest ingestion batch."""
    newest = _newest(lake.ingestion.manifests)
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


def _snapshots(bucket: Bucket[Any]) -> dict[str, list[StoredObject]]:
    found: dict[str, list[StoredObject]] = {}
    for key, stored in bucket.objects.items():
        if key.startswith(SNAPSHOT_PREFIX):
            found.setdefault(key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0], []).append(stored)
    return found


def check_transform_state(lake: Lake, min_age: timedelta, report: Report) -> None:
    """The transform state belongs to the newest processed batch: its snapshot is complete,
    `_state/transform.json` names it, and no other batch's snapshot is left."""
    bucket = lake.processed
    newest = _newest(bucket.manifests)
    pointer = (bucket.state or {}).get("batch_id")
    snapshots = _snapshots(bucket)
    if bucket.state_damage:
        report.add(
            Finding(
                "transform-state",
                bucket.state_damage,
                "every transform stops there; --repair "
                + (f"points it at the newest processed batch {newest}" if newest else "removes it"),
                actions=(
                    Action(WRITE_TRANSFORM_STATE, bucket.name, newest)
                    if newest
                    else Action(DELETE_OBJECT, bucket.name, TRANSFORM_STATE_KEY),
                ),
            )
        )
        pointer = newest
    if newest is not None:
        present = {s.key for s in snapshots.get(newest, [])}
        required = snapshot_names() + ([REJECTED_SNAPSHOT] if lake.snapshot_has_rejects else [])
        missing = [
            name for name in required if f"{SNAPSHOT_PREFIX}{newest}/{name}.parquet" not in present
        ] + [f"a readable s3://{bucket.name}/{key}" for key in bucket.damaged]
        if missing:
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
            report.add(
                Finding(
                    "transform-state",
                    f"the state snapshot of the newest processed batch {newest} lacks"
                    f" {', '.join(missing)}",
                    advice,
                    actions=actions,
                )
            )
        elif pointer != newest:
            report.add(
                Finding(
                    "transform-state",
                    f"s3://{bucket.name}/{TRANSFORM_STATE_KEY} is at batch {pointer}, not the"
                    f" newest processed batch {newest}",
                    "the next transform recovers it from the manifest; --repair writes it now",
                    actions=(Action(WRITE_TRANSFORM_STATE, bucket.name, newest),),
                )
            )
    elif pointer is not None:
        report.add(
            Finding(
                "transform-state",
                f"s3://{bucket.name}/{TRANSFORM_STATE_KEY} names batch {pointer} but there is no"
                " processed batch",
                "a processed manifest was removed; restore it from S3 versioning; not repaired"
                " automatically",
            )
        )
    stale: list[StoredObject] = []
    young = 0
    for batch, objects in snapshots.items():
        if batch == newest:
            continue
        if newest is not None and batch < newest:
            stale += objects  # older than the state: garbage whatever its age
        elif all(lake.now - s.modified >= min_age for s in objects):
            stale += objects  # a batch whose transform died before its manifest
        else:
            young += 1
    if stale:
        batches = {s.key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0] for s in stale}
        report.add(
            Finding(
                "snapshots",
                f"s3://{bucket.name}: state snapshots of {len(batches)} batch(es) other than the"
                f" newest are left: {_examples(batches)}",
                "a transform died before its tidy-up; --repair deletes them (the next transform"
                " would too)",
                len(batches),
                tuple(Action(DELETE_OBJECT, bucket.name, s.key) for s in stale),
            )
        )
    if young:
        report.notes.append(
            f"s3://{bucket.name}: state snapshots of {young} batch(es) newer than the newest"
            f" processed batch are younger than {_age(min_age)}: a transform may be writing them"
        )


def _age(min_age: timedelta) -> str:
    return f"{int(min_age.total_seconds())}s"


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
            f" references: {_examples(old)}",
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
                f" {_age(min_age)}: {_examples(u.key for u in old)}",
                "left by a stage that died; --repair aborts them",
                len(old),
                tuple(Action(ABORT_UPLOAD, bucket.name, u.key, u.upload_id) for u in old),
            )
        )


def check_version_keys(lake: Lake, report: Report) -> None:
    """Each dimension's natural id and each fact's version key is unique."""
    missing = sorted(table for table, extra in lake.duplicate_keys.items() if extra < 0)
    if missing:
        report.add(
            Finding(
                "warehouse-tables",
                f"{len(missing)} warehouse table(s) do not exist: {_examples(missing)}",
                "load fails until they do; run `python -m etl init-warehouse` (or map a prepared"
                " warehouse's names with WAREHOUSE_NAME_MAP)",
            )
        )
    for table, extra in lake.duplicate_keys.items():
        if extra < 0:
            continue
        key = ", ".join(WAREHOUSE_TABLES[table].key)
        report.add(
            Finding(
                "warehouse-keys",
                f"{table}: {extra} row(s) repeat a ({key}) already present",
                "a load ran without the unique version index; doctor never deletes warehouse"
                f" rows: review them (GROUP BY {key} HAVING count(*) > 1), remove the extra"
                " copies by hand and create the index of docs/architecture.md",
                extra,
            )
        )


# ---------------------------------------------------------------- the adapter


def _listing(store: ObjectStore) -> dict[str, StoredObject]:
    found = {}
    try:
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = StoredObject(
                    item["Key"], int(item["Size"]), item["LastModified"]
                )
    except (BotoCoreError, ClientError) as error:
        raise StorageError(f"cannot list s3://{store.bucket}: {error}") from error
    return found


def _uploads(store: ObjectStore) -> list[OpenUpload]:
    found = []
    try:
        pages = store.client.get_paginator("list_multipart_uploads").paginate(Bucket=store.bucket)
        for page in pages:
            for item in page.get("Uploads", []):
                found.append(OpenUpload(item["Key"], item["UploadId"], item["Initiated"]))
    except (BotoCoreError, ClientError) as error:
        raise StorageError(f"cannot list uploads of s3://{store.bucket}: {error}") from error
    return found


def _sha256(store: ObjectStore, key: str) -> str | None:
    """Streamed, so a large extract never sits in memory."""
    reader = store.open(key)
    if reader is None:
        return None
    with reader:
        while reader.read(1024 * 1024):
            pass
    return reader.sha256


def _bucket(store: ObjectStore, parse: Any, state_key: str) -> Bucket[Any]:
    objects = _listing(store)
    manifests, unreadable = {}, {}
    for key in sorted(k for k in objects if k.startswith(layout.MANIFEST_PREFIX)):
        try:
            manifests[layout.batch_id_of_manifest(key)] = parse(store, key)
        except ManifestFormatError as error:
            unreadable[key] = str(error)  # names the object already
        except DamagedObjectError as error:  # not JSON
            unreadable[key] = str(error)
    bucket: Bucket[Any] = Bucket(
        store.bucket, manifests, unreadable, objects, {}, _uploads(store), None
    )
    for key in bucket.referenced():
        if key in objects:
            digest = _sha256(store, key)
            if digest is not None:
                bucket.sha256[key] = digest
    try:
        bucket.state = store.get_json(state_key)
        if bucket.state is not None and (
            not isinstance(bucket.state, dict)
            or not isinstance(bucket.state.get("batch_id"), str | None)
        ):
            raise store.damaged(state_key, "a JSON document of the wrong shape")
    except DamagedObjectError as error:
        bucket.state, bucket.state_damage = None, str(error)
    return bucket


def _with_snapshot_damage(store: ObjectStore, bucket: Bucket[Any]) -> Bucket[Any]:
    """Read each object of the newest batch's state snapshot: transform stops on one it
    cannot read, so the check must see the damage, not only the listing."""
    newest = _newest(bucket.manifests)
    prefix = f"{SNAPSHOT_PREFIX}{newest}/"
    for key in sorted(k for k in bucket.objects if newest and k.startswith(prefix)):
        try:
            read_parquet(store, key)
        except DamagedObjectError as error:
            bucket.damaged[key] = str(error)
    return bucket


def _ledger(conn: Connection) -> list[str]:
    exists = conn.execute("SELECT to_regclass('etl.load_ledger') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute("SELECT batch_id FROM etl.load_ledger ORDER BY loaded_at, batch_id")
    return [str(row[0]) for row in rows.fetchall()]


def _duplicate_keys(conn: Connection, target: Target) -> dict[str, int]:
    """Rows beyond the first per key, per table; -1 for a table that does not exist."""
    found = {}
    existing = target.existing_tables(conn)
    for name, table in WAREHOUSE_TABLES.items():
        if target.names.table(name) not in existing:
            found[name] = -1
            continue
        key = sql.SQL(", ").join(target.column(name, c) for c in table.key)
        query = sql.SQL(
            "SELECT coalesce(sum(n - 1), 0) FROM"
            " (SELECT count(*) AS n FROM {} GROUP BY {} HAVING count(*) > 1) AS repeated"
        ).format(target.table(name), key)
        row = conn.execute(query).fetchone()
        if row and row[0]:
            found[name] = int(row[0])
    return found


def look(
    ingestion: ObjectStore,
    processed: ObjectStore,
    conn: Connection,
    target: Target,
    now: datetime | None = None,
) -> Lake:
    """Read everything the checks need. Reads only (and only bookkeeping that is the
    loader's own: etl.bookkeeping)."""
    bookkeeping.check(conn)
    lake = Lake(
        _bucket(ingestion, ingestion_manifest.read_key, layout.STATE_KEY),
        _with_snapshot_damage(
            processed, _bucket(processed, processed_manifest.read_key, TRANSFORM_STATE_KEY)
        ),
        _ledger(conn),
        _duplicate_keys(conn, target),
        now or datetime.now(UTC),
        _cursor_damage(processed),
    )
    newest = _newest(lake.processed.manifests)
    lake.snapshot_has_rejects = bool(newest) and writes_rejects(processed, newest or "")
    conn.rollback()  # end the read-only transaction the queries opened
    return lake


def _cursor_damage(processed: ObjectStore) -> str:
    try:
        read_cursor(processed)
    except DamagedObjectError as error:
        return str(error)
    return ""


# ---------------------------------------------------------------- plan and repair


def plan(report: Report) -> list[Action]:
    """The safe actions of every finding, in the order they must run: open uploads first,
    then moving broken batches aside and rewinding the watermarks, then the transform state,
    then deletions of objects nothing references."""
    actions: list[Action] = []
    for finding in report.findings:
        actions += [a for a in finding.actions if a not in actions]
    if any(a.kind == QUARANTINE_BATCH for a in actions):
        # the rewind that goes with moving batches aside wins over any other state fix
        rewinds = [a for a in actions if a.kind == SET_INGEST_STATE]
        keep = next(a for f in report.findings for a in f.actions if a.kind == QUARANTINE_BATCH)
        rewind = next(
            a
            for f in report.findings
            if keep in f.actions
            for a in f.actions
            if a.kind == SET_INGEST_STATE
        )
        actions = [a for a in actions if a not in rewinds or a == rewind]
    return sorted(actions, key=lambda a: ORDER.index(a.kind))


@dataclass
class RepairResult:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def reextract(self) -> bool:
        """Whether batches were moved aside: the next ingest extracts their changes again."""
        return any(line.startswith("moved ingestion batch") for line in self.done)


def repair(
    actions: list[Action], ingestion: ObjectStore, processed: ObjectStore, policy: str = SET_ASIDE
) -> RepairResult:
    """Perform a plan. Never touches the warehouse; never deletes an object a manifest under
    `_manifests/` references (re-checked here, after every other step, just before
    deleting). The caller must hold every stage's lease while this runs, so no stage writes
    in between. `policy` is the bad-row policy rebuilt batches are remodelled under."""
    stores = {ingestion.bucket: ingestion, processed.bucket: processed}
    result = RepairResult()
    referenced: dict[str, set[str]] = {}
    rederived = False
    for action in actions:
        store = stores[action.bucket]
        if action.kind == ABORT_UPLOAD:
            _client_call(
                store, "abort an upload of", action.key,
                lambda s=store, a=action: s.client.abort_multipart_upload(
                    Bucket=s.bucket, Key=a.key, UploadId=a.detail
                ),
            )  # fmt: skip
            result.done.append(f"aborted the multipart upload of s3://{store.bucket}/{action.key}")
        elif action.kind == QUARANTINE_BATCH:
            moved = _quarantine(store, action.key)
            result.done.append(
                f"moved ingestion batch {action.key} ({moved} object(s)) to"
                f" s3://{store.bucket}/{QUARANTINE_PREFIX}{action.key}/"
            )
        elif action.kind == SET_INGEST_STATE:
            if action.detail:
                manifest = ingestion_manifest.read(store, action.detail)
                if manifest is None:
                    result.skipped.append(f"no ingestion batch {action.detail} to set state to")
                    continue
                store.put_json(layout.STATE_KEY, manifest["state_after"])
                result.done.append(f"set the ingestion state to the state after {action.detail}")
            else:
                store.delete(layout.STATE_KEY)
                result.done.append("removed the ingestion state: the next ingest is a full extract")
        elif action.kind == REDERIVE_BATCH:
            if not rederived:  # every batch asked for, in one replay
                wanted = [a.key for a in actions if a.kind == REDERIVE_BATCH]
                result.done += _rederive(ingestion, processed, wanted, policy)
                rederived = True
        elif action.kind == REBUILD_TRANSFORM_STATE:
            batches = rebuild_transform_state(ingestion, store, action.key, policy)
            result.done.append(
                f"rebuilt the transform state of batch {action.key} from {batches} batch(es)"
            )
        elif action.kind == WRITE_TRANSFORM_STATE:
            store.put_json(TRANSFORM_STATE_KEY, {"batch_id": action.key})
            result.done.append(f"pointed the transform state at batch {action.key}")
        elif action.kind == SET_REPORT_CURSOR:
            store.put_json(REPORTED_KEY, {"batch_id": action.key})
            result.done.append(f"pointed the set-aside report cursor at batch {action.key}")
        elif action.kind == DELETE_OBJECT:
            if store.bucket not in referenced:
                referenced[store.bucket] = _referenced_now(store)
            if action.key in referenced[store.bucket]:
                result.skipped.append(
                    f"kept s3://{store.bucket}/{action.key}: a manifest references it now"
                )
                continue
            store.delete(action.key)
            result.done.append(f"deleted s3://{store.bucket}/{action.key}")
    for line in result.done:
        log_event(logger, "doctor_repaired", action=line)
    return result


def _rederive(
    ingestion: ObjectStore, processed: ObjectStore, batches: list[str], policy: str
) -> list[str]:
    transformed = {layout.batch_id_of_manifest(k) for k in processed.keys(layout.MANIFEST_PREFIX)}
    out = rederive(ingestion, processed, batches, transformed | set(batches), policy)
    done = [
        f"rebuilt processed batch(es) {', '.join(sorted(batches))} from the ingestion bucket"
        f" ({out.replayed} batch(es) remodelled): {len(out.files)} file(s)"
        f" and {len(out.manifests)} manifest(s) written again"
    ]
    if out.kept_differing:
        done.append(
            f"kept {len(out.kept_differing)} whole file(s) the rebuild would have made"
            f" differently ({_examples(out.kept_differing)}): a file is never overwritten"
        )
    return done


def _client_call(store: ObjectStore, what: str, key: str, call: Any) -> None:
    try:
        call()
    except (BotoCoreError, ClientError) as error:
        raise StorageError(f"cannot {what} s3://{store.bucket}/{key}: {error}") from error


def _referenced_now(store: ObjectStore) -> set[str]:
    """Every key a manifest of the bucket references, read afresh; a manifest that cannot be
    read makes every data object count as referenced."""
    found: set[str] = set()
    for key in store.keys(layout.MANIFEST_PREFIX):
        document = store.get_json(key) or {}
        tables = document.get("tables") if isinstance(document, dict) else None
        if not isinstance(tables, dict):
            raise EtlError(f"s3://{store.bucket}/{key} cannot be read; refusing to delete anything")
        rejects = document.get("rejects") or {}
        entries = [*tables.values(), *(rejects.values() if isinstance(rejects, dict) else ())]
        found |= {e["file"] for e in entries if isinstance(e, dict) and e.get("file")}
    return found


def _quarantine(store: ObjectStore, batch_id: str) -> int:
    """Copy the batch's manifest and files under `_quarantine/<batch>/`, then remove the
    manifest (so no stage sees the batch), then the files (no manifest names them now)."""
    key = layout.manifest_key(batch_id)
    manifest = ingestion_manifest.read_key(store, key)
    if manifest is None:
        return 0
    files = [e["file"] for e in manifest["tables"].values() if e["file"]]
    present = [f for f in files if store.get_bytes(f) is not None]
    for source in [key, *present]:
        _client_call(
            store, "copy", source,
            lambda s=source: store.client.copy_object(
                Bucket=store.bucket, Key=f"{QUARANTINE_PREFIX}{batch_id}/{s}",
                CopySource={"Bucket": store.bucket, "Key": s},
            ),
        )  # fmt: skip
    store.delete(key)
    for source in present:
        store.delete(source)
    return 1 + len(present)


def rebuild_transform_state(
    ingestion: ObjectStore, processed: ObjectStore, up_to: str, policy: str = SET_ASIDE
) -> int:
    """Replay the remodel over every ingestion batch that was transformed, up to `up_to`,
    keeping only the state (nothing else is written), then store it as that batch's
    snapshot and point `_state/transform.json` at it. The same state transform would have
    saved, since a batch's state depends only on the state before it and the batch."""
    done = {layout.batch_id_of_manifest(k) for k in processed.keys(layout.MANIFEST_PREFIX)}
    state = TransformState()
    replayed = 0
    for key in ingestion.keys(layout.MANIFEST_PREFIX):
        batch = layout.batch_id_of_manifest(key)
        if batch > up_to:
            break
        manifest = ingestion_manifest.read_key(ingestion, key)
        if batch not in done or manifest is None:
            continue
        with ExitStack() as stack:
            state = build_batch(ingestion, manifest, state, stack, policy).state_after
        replayed += 1
    for name, table in snapshot_tables(state).items():
        processed.put_bytes(f"{SNAPSHOT_PREFIX}{up_to}/{name}.parquet", parquet_bytes(table))
    processed.put_json(TRANSFORM_STATE_KEY, {"batch_id": up_to})
    return replayed


def describe(report: Report) -> list[str]:
    """What the CLI prints: one line per broken invariant, then the notes."""
    return [*(f.line() for f in report.findings), *(f"note: {n}" for n in report.notes)]


def summary(lake: Lake, report: Report) -> str:
    if not report.healthy:
        return f"doctor: {len(report.findings)} broken invariant(s)"
    newest_processed = _newest(lake.processed.manifests)
    newest_loaded = _newest(lake.ledger)
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
                leases.enter_context(lease.hold(settings, stage))
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
