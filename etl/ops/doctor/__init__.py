"""`python -m etl doctor [--repair]`: are the buckets, the ledger and the warehouse in a
state every later run can build on, and if not, what to do.

Three layers, so the soak's verdict and the CLI share one implementation:

- `look` (thin adapter, inspect.py): reads what the two buckets and the warehouse hold
  into a `Lake` (lake.py: the data types) - manifests through their typed readers, every
  object with its size, age and, when a manifest references it, its sha256; open
  multipart uploads; the two state objects; the load ledger; duplicated warehouse keys.
- `check` (pure, checks.py and the check_*.py it runs): the invariants over a `Lake`, one
  `Finding` per broken invariant, each with what to do and the repair actions that are
  safe.
- `plan` / `repair` (repairs.py): the actions of the findings, in a safe order, and a
  function that performs them. Repair never deletes or updates a warehouse row and never
  deletes an object a manifest under `_manifests/` references. It must not run while a
  stage writes: `repair_now` checks again, plans and repairs in one step, and the caller
  holds every stage's lease around that call (see docs/operations.md).

command.py is the command itself (`examine`, `repair_now`, `run`) and what it prints
(`describe`, `summary`).

Debris is judged by age: an object no manifest references, or an open multipart upload,
may be what a live stage is writing right now, so it counts only when older than
`Settings.doctor_min_age` (default an hour); younger ones are reported as a note.
"""

from __future__ import annotations

from etl.ops.doctor.checks import check
from etl.ops.doctor.command import describe, examine, repair_now, run, summary
from etl.ops.doctor.inspect import look
from etl.ops.doctor.lake import (
    ABORT_UPLOAD,
    DELETE_OBJECT,
    QUARANTINE_BATCH,
    QUARANTINE_PREFIX,
    REBUILD_TRANSFORM_STATE,
    REDERIVE_BATCH,
    SET_INGEST_STATE,
    SET_REPORT_CURSOR,
    WRITE_TRANSFORM_STATE,
    Action,
    Bucket,
    Finding,
    Lake,
    OpenUpload,
    Report,
    StoredObject,
)
from etl.ops.doctor.repairs import RepairResult, plan, rebuild_transform_state, repair

__all__ = [
    "ABORT_UPLOAD",
    "DELETE_OBJECT",
    "QUARANTINE_BATCH",
    "QUARANTINE_PREFIX",
    "REBUILD_TRANSFORM_STATE",
    "REDERIVE_BATCH",
    "SET_INGEST_STATE",
    "SET_REPORT_CURSOR",
    "WRITE_TRANSFORM_STATE",
    "Action",
    "Bucket",
    "Finding",
    "Lake",
    "OpenUpload",
    "RepairResult",
    "Report",
    "StoredObject",
    "check",
    "describe",
    "examine",
    "look",
    "plan",
    "rebuild_transform_state",
    "repair",
    "repair_now",
    "run",
    "summary",
]
