"""`python -m etl doctor --repair` against the real services: each invariant is broken by
hand, doctor names it, repair fixes the safe ones (and only those), and a later
`python -m etl run` succeeds."""

from __future__ import annotations

import psycopg
import pytest

from etl import layout
from etl.ingest.run import ingest
from etl.transform.batch import SNAPSHOT_PREFIX, output_key, transform_pending
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from tests.etl.ops.doctor.pipeline import LATER, Pipeline
from tests.etl.test_main import run_etl


@pytest.mark.parametrize("damage", ["deleted", "edited"])
def test_a_pending_batch_whose_file_is_lost_is_extracted_again(
    pipeline: Pipeline, damage: str
) -> None:
    pipeline.day()
    broken = ingest(pipeline.settings, pipeline.s3).batch_id
    pipeline.day()
    after = ingest(pipeline.settings, pipeline.s3).batch_id  # intact, but after the broken one
    key = pipeline.files(pipeline.ingestion, broken)[0]
    if damage == "deleted":
        pipeline.ingestion.delete(key)
    else:
        pipeline.ingestion.put_bytes(key, (pipeline.ingestion.get_bytes(key) or b"") + b"\n")
    assert run_etl(pipeline.env, "transform").returncode != 0  # stuck without a repair

    found = pipeline.doctor()
    repaired = pipeline.doctor("--repair")
    run = run_etl(pipeline.env, "run")
    healthy = pipeline.doctor()

    what = "is missing" if damage == "deleted" else "does not match its manifest (size or sha256)"
    assert found.returncode == 1
    assert (
        f"file: s3://{pipeline.ingestion.bucket}/{key} of ingestion batch {broken} {what};"
        " transform fails on this batch every run" in found.stdout
    )
    assert found.stdout.splitlines()[-1] == "doctor: 1 broken invariant(s)"
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"move ingestion batch {broken}" in repaired.stdout
    assert f"move ingestion batch {after}" in repaired.stdout
    assert (
        f"set s3://{pipeline.ingestion.bucket}/{layout.STATE_KEY} to the state after batch {pipeline.second}"
        in repaired.stdout
    )
    assert "re-extracted the moved batches' changes as batch" in repaired.stdout
    quarantined = set(pipeline.ingestion.keys("_quarantine/"))
    assert f"_quarantine/{broken}/{layout.manifest_key(broken)}" in quarantined
    assert pipeline.ingestion.get_json(layout.manifest_key(broken)) is None
    assert run.returncode == 0, run.stderr
    assert healthy.returncode == 0, healthy.stdout
    # the moved batches' changes come again as the source is now (what they saw of a
    # version changed since is gone with their files)
    pipeline.expect_current()
    pipeline.warehouse_is_expected()


def test_debris_counts_only_once_old_and_repair_removes_it(pipeline: Pipeline) -> None:
    ingestion, processed = pipeline.ingestion, pipeline.processed
    orphan_csv = layout.extract_key("payment", LATER)
    ingestion.put_bytes(orphan_csv, b'"payment_id"\n')
    orphan_parquet = output_key("fact_payment", LATER)
    processed.put_bytes(orphan_parquet, b"half a parquet")
    stale = f"{SNAPSHOT_PREFIX}{pipeline.first}/address.parquet"
    processed.put_bytes(stale, b"old")
    upload = pipeline.s3.create_multipart_upload(Bucket=processed.bucket, Key="fact_sales_order/x")
    referenced = pipeline.files(ingestion, pipeline.second) + pipeline.files(
        processed, pipeline.second
    )

    young = pipeline.doctor(min_age="3600")
    found = pipeline.doctor()
    repaired = pipeline.doctor("--repair")
    run = run_etl(pipeline.env, "run")

    # just written: a live stage's, so only noted (the stale snapshot is older than the
    # state, so garbage at any age). moto reports every upload as initiated in 2010, so
    # here an upload is always old; S3 reports the real time.
    assert young.returncode == 1
    assert [line for line in young.stdout.splitlines() if line.startswith(("orphans", "snap"))] == [
        f"snapshots: s3://{processed.bucket}: state snapshots of 1 batch(es) other than the"
        f" newest are left: {pipeline.first}; a transform died before its tidy-up; --repair"
        " deletes them (the next transform would too)",
    ]
    assert (
        f"note: s3://{ingestion.bucket}: 1 object(s) no manifest references are younger than"
        " 3600s, so not counted: a running stage may be writing them" in young.stdout
    )
    assert f"note: s3://{processed.bucket}: 1 object(s) no manifest references" in young.stdout
    assert found.returncode == 1
    assert (
        f"orphans: s3://{ingestion.bucket}: 1 object(s) older than 0s that no manifest references: {orphan_csv};"
        in found.stdout
    )
    assert (
        f"orphans: s3://{processed.bucket}: 1 object(s) older than 0s that no manifest references: {orphan_parquet};"
        in found.stdout
    )
    assert (
        f"uploads: s3://{processed.bucket}: 1 multipart upload(s) open for longer than 0s: fact_sales_order/x;"
        in found.stdout
    )
    assert found.stdout.splitlines()[-1] == "doctor: 4 broken invariant(s)"
    assert repaired.returncode == 0, repaired.stdout
    assert "repair plan: 4 step(s)" in repaired.stdout
    for key in (orphan_csv, orphan_parquet, stale):
        assert ingestion.get_bytes(key) is None and processed.get_bytes(key) is None
    assert pipeline.s3.list_multipart_uploads(Bucket=processed.bucket).get("Uploads", []) == []
    assert upload["UploadId"]
    for key in referenced:  # repair never deletes an object a manifest references
        assert (ingestion.get_bytes(key) or processed.get_bytes(key)) is not None
    assert run.returncode == 0, run.stderr


def test_transform_state_is_pointed_or_rebuilt(pipeline: Pipeline) -> None:
    processed = pipeline.processed
    snapshot = {
        key: processed.get_bytes(key)
        for key in processed.keys(f"{SNAPSHOT_PREFIX}{pipeline.second}/")
    }
    processed.put_json(TRANSFORM_STATE_KEY, {"batch_id": pipeline.first})
    lost = f"{SNAPSHOT_PREFIX}{pipeline.second}/emitted_payment.parquet"

    behind = pipeline.doctor()
    pointed = pipeline.doctor("--repair")
    pointer = processed.get_json(TRANSFORM_STATE_KEY)
    processed.delete(lost)
    pipeline.day()
    stuck = run_etl(pipeline.env, "run")
    incomplete = pipeline.doctor()
    rebuilt = pipeline.doctor("--repair")
    rebuilt_snapshot = {key: processed.get_bytes(key) for key in snapshot}
    run = run_etl(pipeline.env, "run")

    assert behind.returncode == 1
    assert (
        f"transform-state: s3://{processed.bucket}/{TRANSFORM_STATE_KEY} is at batch"
        f" {pipeline.first}, not the newest processed batch {pipeline.second}" in behind.stdout
    )
    assert pointed.returncode == 0, pointed.stdout
    assert pointer == {"batch_id": pipeline.second}
    assert stuck.returncode == 1 and "is incomplete" in stuck.stderr
    assert (
        f"transform-state: the state snapshot of the newest processed batch {pipeline.second}"
        " lacks emitted_payment" in incomplete.stdout
    )
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert "rebuilt the transform state of batch" in rebuilt.stdout
    assert rebuilt_snapshot == snapshot  # the same state, byte for byte
    assert run.returncode == 0, run.stderr
    assert pipeline.doctor().returncode == 0
    pipeline.expect_current()  # no change between the ingest that stopped and this run
    pipeline.warehouse_is_expected()


def test_the_ingest_state_behind_or_ahead_of_the_manifests_is_rewritten(
    pipeline: Pipeline,
) -> None:
    ingestion = pipeline.ingestion
    first = ingestion.get_json(layout.manifest_key(pipeline.first)) or {}
    second = ingestion.get_json(layout.manifest_key(pipeline.second)) or {}
    ingestion.put_json(layout.STATE_KEY, first["state_after"])  # died before the state

    behind = pipeline.doctor()
    written = pipeline.doctor("--repair")
    state_after_repair = ingestion.get_json(layout.STATE_KEY)
    ingestion.put_json(layout.STATE_KEY, {**second["state_after"], "batch_id": LATER})
    ahead = pipeline.doctor()
    rewound = pipeline.doctor("--repair")
    pipeline.day()
    run = run_etl(pipeline.env, "run")
    pipeline.expect_current()

    where = f"s3://{ingestion.bucket}/{layout.STATE_KEY}"
    assert behind.stdout.splitlines()[0] == (
        f"ingest-state: {where} is at batch {pipeline.first}, not the state after the newest"
        f" batch {pipeline.second}; the next ingest recovers it from the manifest; --repair"
        " writes it now"
    )
    assert written.returncode == 0, written.stdout
    assert state_after_repair == second["state_after"]
    assert ahead.returncode == 1
    assert (
        f"ingest-state: {where} is at batch {LATER}, not the state after the newest batch"
        f" {pipeline.second}; the next ingest would continue from a batch that has no manifest"
        in ahead.stdout
    )
    assert rewound.returncode == 0, rewound.stdout
    assert run.returncode == 0, run.stderr
    assert pipeline.doctor().returncode == 0
    pipeline.warehouse_is_expected()


@pytest.mark.parametrize(
    ("bucket", "key", "garbage"),
    [
        ("processed", TRANSFORM_STATE_KEY, b'{"batch_id": "2024'),
        ("processed", TRANSFORM_STATE_KEY, b"[1, 2]"),
        ("ingestion", layout.STATE_KEY, b"\x00\xff not json"),
        ("ingestion", layout.STATE_KEY, b'{"batch_id": 7}'),
        ("ingestion", layout.STATE_KEY, b"[]"),
        ("processed", "snapshot", b"PAR1 truncated"),
    ],
)
def test_a_damaged_state_object_is_a_finding_and_repair_rebuilds_it(
    pipeline: Pipeline, bucket: str, key: str, garbage: bytes
) -> None:
    store = pipeline.processed if bucket == "processed" else pipeline.ingestion
    if key == "snapshot":
        key = f"{SNAPSHOT_PREFIX}{pipeline.second}/staff.parquet"
    store.put_bytes(key, garbage)
    pipeline.day()

    commands = [run_etl(pipeline.env, c) for c in ("run", "status")] + [pipeline.doctor()]

    for result in commands:
        assert "Traceback" not in result.stderr, result.stderr
    # status reads the state pointers, not the remodel snapshot
    failing = commands if key.endswith(".json") else [commands[0], commands[2]]
    assert [r.returncode for r in failing] == [1] * len(failing)
    run_error = commands[0].stderr.strip().splitlines()
    assert len(run_error) == 1 and f"s3://{store.bucket}/{key} is damaged" in run_error[0]
    assert "python -m etl doctor" in run_error[0]
    assert f"s3://{store.bucket}/{key}" in commands[2].stdout

    repaired = pipeline.doctor("--repair")
    run = run_etl(pipeline.env, "run")
    healthy = pipeline.doctor()

    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert run.returncode == 0, run.stderr
    assert healthy.returncode == 0, healthy.stdout
    pipeline.expect_current()
    pipeline.warehouse_is_expected()


def test_lost_or_altered_processed_data_is_rebuilt_from_the_ingestion_bucket(
    pipeline: Pipeline,
) -> None:
    """The processed bucket is derived: a lost or altered file, an unreadable manifest or
    one lost for a loaded batch is rebuilt, loaded or not, with the bytes transform wrote."""
    processed = pipeline.processed
    pipeline.day()
    ingest(pipeline.settings, pipeline.s3)
    [pending] = transform_pending(pipeline.settings, pipeline.s3)  # not loaded yet
    original = {
        key: processed.get_bytes(key)
        for batch in (pipeline.first, pipeline.second, pending.batch_id)
        for key in pipeline.files(processed, batch)
    }
    lost, edited, unloaded = (
        pipeline.files(processed, pipeline.first)[0],
        pipeline.files(processed, pipeline.second)[-1],
        pipeline.files(processed, pending.batch_id)[0],
    )
    processed.delete(lost)
    processed.put_bytes(edited, (original[edited] or b"")[:100])  # truncated
    processed.delete(unloaded)
    manifest_key = layout.manifest_key(pipeline.second)
    processed.put_bytes(manifest_key, b'{"batch_id": ')  # and its manifest garbled
    assert run_etl(pipeline.env, "load").returncode != 0  # stuck without a repair

    found = pipeline.doctor()
    repaired = pipeline.doctor("--repair")

    assert found.returncode == 1
    assert "Traceback" not in found.stderr
    assert (
        f"file: s3://{processed.bucket}/{unloaded} of processed batch {pending.batch_id} is"
        " missing; load fails on this batch every run; --repair rebuilds it from the ingestion"
        " bucket" in found.stdout
    )
    assert f"s3://{processed.bucket}/{lost} of processed batch {pipeline.first}" in found.stdout
    assert f"manifest-unreadable: s3://{processed.bucket}/{manifest_key}" in found.stdout
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "rebuilt processed batch(es)" in repaired.stdout
    for key, body in original.items():  # the very bytes transform wrote
        assert processed.get_bytes(key) == body, key
    assert pipeline.processed.get_json(manifest_key) is not None

    processed.delete(layout.manifest_key(pipeline.first))  # a loaded batch's manifest lost
    lost_manifest = pipeline.doctor()
    assert (
        f"ledger: loaded batch {pipeline.first} has no processed manifest" in lost_manifest.stdout
    )
    assert pipeline.doctor("--repair").returncode == 0
    assert processed.get_json(layout.manifest_key(pipeline.first)) is not None

    run = run_etl(pipeline.env, "run")
    assert run.returncode == 0, run.stderr
    assert pipeline.doctor().returncode == 0
    pipeline.expect_current()
    pipeline.warehouse_is_expected()


def test_a_lost_record_of_open_set_aside_rows_is_rebuilt_not_read_as_none(
    pipeline: Pipeline,
) -> None:
    """rejected_open.parquet of the newest snapshot deleted: read as "nothing open" the
    rows would be emailed and counted again; so every reader refuses and doctor rebuilds."""
    with psycopg.connect(pipeline.source) as conn:  # one open set-aside row
        conn.execute(
            "UPDATE payment SET payment_date = '2024-02-30', last_updated = now()::timestamp(3)"
            " WHERE payment_id = (SELECT min(payment_id) FROM payment)"
        )
    pipeline.day()
    assert run_etl(pipeline.env, "run").returncode == 0
    newest = sorted(pipeline.processed.keys(layout.MANIFEST_PREFIX))[-1]
    batch = layout.batch_id_of_manifest(newest)
    pipeline.processed.delete(f"{SNAPSHOT_PREFIX}{batch}/rejected_open.parquet")

    status = run_etl(pipeline.env, "status")
    found = pipeline.doctor()
    repaired = pipeline.doctor("--repair")

    assert status.returncode == 1 and "no snapshot rejected_open" in status.stderr
    assert "Traceback" not in status.stderr
    assert f"the state snapshot of the newest processed batch {batch} lacks rejected_open" in (
        found.stdout
    )
    assert repaired.returncode == 0, repaired.stdout
    after = run_etl(pipeline.env, "status")
    assert "set aside: 1 row(s) open" in after.stdout, after.stdout + after.stderr


def test_a_damaged_report_cursor_is_named_and_rebuilt(pipeline: Pipeline) -> None:
    pipeline.processed.put_bytes("_state/rejects_reported.json", b'{"batch_id": ')

    found = pipeline.doctor()
    repaired = pipeline.doctor("--repair")

    assert found.returncode == 1
    assert "report-cursor: s3://" in found.stdout and "_state/rejects_reported.json is damaged" in (
        found.stdout
    )
    assert repaired.returncode == 0, repaired.stdout
    assert pipeline.processed.get_json("_state/rejects_reported.json") == {
        "batch_id": pipeline.second
    }
