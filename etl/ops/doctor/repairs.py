"""`plan` / `repair`: the actions of the findings, in a safe order, and a function that
performs them. Repair never deletes or updates a warehouse row and never deletes an object
a manifest under `_manifests/` references. It must not run while a stage writes: the
caller holds every stage's lease around it (command.repair_now)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from etl import layout
from etl.config import SET_ASIDE
from etl.errors import EtlError, StorageError
from etl.logs import log_event
from etl.manifests import ingestion as ingestion_manifest
from etl.ops.doctor.lake import (
    ABORT_UPLOAD,
    DELETE_OBJECT,
    ORDER,
    QUARANTINE_BATCH,
    QUARANTINE_PREFIX,
    REBUILD_TRANSFORM_STATE,
    REDERIVE_BATCH,
    SET_INGEST_STATE,
    SET_REPORT_CURSOR,
    WRITE_TRANSFORM_STATE,
    Action,
    Report,
    examples,
)
from etl.storage import ObjectStore
from etl.transform.batch import SNAPSHOT_PREFIX, build_batch, parquet_bytes, snapshot_tables
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from etl.transform.rederive import rederive
from etl.transform.rejects_area import REPORTED_KEY
from etl.transform.remodel import TransformState

logger = logging.getLogger("etl.ops.doctor")


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


@dataclass
class _Repairing:
    """One repair under way: the plan, the stores, and what its steps have done so far."""

    actions: list[Action]
    ingestion: ObjectStore
    processed: ObjectStore
    policy: str
    result: RepairResult = field(default_factory=RepairResult)
    referenced: dict[str, set[str]] = field(default_factory=dict)  # bucket -> keys, read once
    rederived: bool = False

    def store(self, bucket: str) -> ObjectStore:
        """The store of an action's bucket: one of the two."""
        stores = {self.ingestion.bucket: self.ingestion, self.processed.bucket: self.processed}
        return stores[bucket]


def repair(
    actions: list[Action], ingestion: ObjectStore, processed: ObjectStore, policy: str = SET_ASIDE
) -> RepairResult:
    """Perform a plan. Never touches the warehouse; never deletes an object a manifest under
    `_manifests/` references (re-checked here, after every other step, just before
    deleting). The caller must hold every stage's lease while this runs, so no stage writes
    in between. `policy` is the bad-row policy rebuilt batches are remodelled under."""
    run = _Repairing(actions, ingestion, processed, policy)
    for action in actions:
        _STEPS[action.kind](run, action, run.store(action.bucket))
    for line in run.result.done:
        log_event(logger, "doctor_repaired", action=line)
    return run.result


def _abort_upload(run: _Repairing, action: Action, store: ObjectStore) -> None:
    _client_call(
        store, "abort an upload of", action.key,
        lambda: store.client.abort_multipart_upload(
            Bucket=store.bucket, Key=action.key, UploadId=action.detail
        ),
    )  # fmt: skip
    run.result.done.append(f"aborted the multipart upload of s3://{store.bucket}/{action.key}")


def _quarantine_batch(run: _Repairing, action: Action, store: ObjectStore) -> None:
    moved = _quarantine(store, action.key)
    run.result.done.append(
        f"moved ingestion batch {action.key} ({moved} object(s)) to"
        f" s3://{store.bucket}/{QUARANTINE_PREFIX}{action.key}/"
    )


def _set_ingest_state(run: _Repairing, action: Action, store: ObjectStore) -> None:
    if not action.detail:
        store.delete(layout.STATE_KEY)
        run.result.done.append("removed the ingestion state: the next ingest is a full extract")
        return
    manifest = ingestion_manifest.read(store, action.detail)
    if manifest is None:
        run.result.skipped.append(f"no ingestion batch {action.detail} to set state to")
        return
    store.put_json(layout.STATE_KEY, manifest["state_after"])
    run.result.done.append(f"set the ingestion state to the state after {action.detail}")


def _rederive_batch(run: _Repairing, action: Action, store: ObjectStore) -> None:
    if not run.rederived:  # every batch asked for, in one replay
        wanted = [a.key for a in run.actions if a.kind == REDERIVE_BATCH]
        run.result.done += _rederive(run.ingestion, run.processed, wanted, run.policy)
        run.rederived = True


def _rebuild_transform_state(run: _Repairing, action: Action, store: ObjectStore) -> None:
    batches = rebuild_transform_state(run.ingestion, store, action.key, run.policy)
    run.result.done.append(
        f"rebuilt the transform state of batch {action.key} from {batches} batch(es)"
    )


def _write_transform_state(run: _Repairing, action: Action, store: ObjectStore) -> None:
    store.put_json(TRANSFORM_STATE_KEY, {"batch_id": action.key})
    run.result.done.append(f"pointed the transform state at batch {action.key}")


def _set_report_cursor(run: _Repairing, action: Action, store: ObjectStore) -> None:
    store.put_json(REPORTED_KEY, {"batch_id": action.key})
    run.result.done.append(f"pointed the set-aside report cursor at batch {action.key}")


def _delete_object(run: _Repairing, action: Action, store: ObjectStore) -> None:
    if store.bucket not in run.referenced:
        run.referenced[store.bucket] = _referenced_now(store)
    if action.key in run.referenced[store.bucket]:
        run.result.skipped.append(
            f"kept s3://{store.bucket}/{action.key}: a manifest references it now"
        )
        return
    store.delete(action.key)
    run.result.done.append(f"deleted s3://{store.bucket}/{action.key}")


_STEPS: dict[str, Callable[[_Repairing, Action, ObjectStore], None]] = {
    ABORT_UPLOAD: _abort_upload,
    QUARANTINE_BATCH: _quarantine_batch,
    SET_INGEST_STATE: _set_ingest_state,
    REDERIVE_BATCH: _rederive_batch,
    REBUILD_TRANSFORM_STATE: _rebuild_transform_state,
    WRITE_TRANSFORM_STATE: _write_transform_state,
    SET_REPORT_CURSOR: _set_report_cursor,
    DELETE_OBJECT: _delete_object,
}


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
            f" differently ({examples(out.kept_differing)}): a file is never overwritten"
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
