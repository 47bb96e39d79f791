"""What doctor works with: the `Lake` `look` reads (two `Bucket`s, the ledger, the
warehouse's repeated keys), the `Finding`s `check` makes of it, and the `Action`s
`repair` performs. Plain data, so the checks are pure functions over it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from etl import layout
from etl.manifests.ingestion import IngestionManifest
from etl.manifests.processed import ProcessedManifest
from etl.transform.batch import SNAPSHOT_PREFIX
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from etl.transform.rejects_area import REPORTED_KEY

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

    def snapshots(self) -> dict[str, list[StoredObject]]:
        """batch id -> the objects of its transform state snapshot (processed bucket)."""
        found: dict[str, list[StoredObject]] = {}
        for key, stored in self.objects.items():
            if key.startswith(SNAPSHOT_PREFIX):
                batch = key.removeprefix(SNAPSHOT_PREFIX).split("/", 1)[0]
                found.setdefault(batch, []).append(stored)
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


def examples(items: Iterable[str]) -> str:
    """The first few of `items`, sorted, and how many more: one line stays readable."""
    shown = sorted(items)
    more = f" and {len(shown) - SHOWN} more" if len(shown) > SHOWN else ""
    return ", ".join(shown[:SHOWN]) + more


def newest_batch(ids: Iterable[str]) -> str | None:
    """The newest of some batch ids (they sort by time), None when there are none."""
    return max(ids, default=None)


def unreadable_batches(bucket: Bucket[Any]) -> set[str]:
    """The batches whose manifest is there but cannot be read."""
    return {layout.batch_id_of_manifest(key) for key in bucket.unreadable}
