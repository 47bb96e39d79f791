"""`python -m etl doctor` against the real services: each invariant is broken by hand and
doctor must name it and exit 1; what is not safe to repair is named and left alone."""

from __future__ import annotations

from psycopg import sql

from devstack.stack import StackEndpoints
from etl import layout
from etl.config import Settings
from etl.ingest.run import ingest
from etl.load.loader import init_warehouse
from etl.warehouse import WAREHOUSE_TABLES
from tests.etl.ops.doctor.pipeline import LATER, Pipeline
from tests.etl.test_main import env_for, run_etl


def test_a_healthy_pipeline_passes_with_pending_work(pipeline: Pipeline) -> None:
    pipeline.day()
    pending = ingest(pipeline.settings, pipeline.s3).batch_id

    result = pipeline.doctor()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "doctor: healthy: 3 ingestion batch(es) (1 pending transform), 2 processed"
        " (0 pending load), 2 loaded"
    ]
    assert pending > pipeline.second


def test_what_is_not_safe_to_repair_is_named_and_left_alone(pipeline: Pipeline) -> None:
    ingestion, processed = pipeline.ingestion, pipeline.processed
    # a warehouse without the version index, where a faulty load repeated a version
    columns = sql.SQL(", ").join(map(sql.Identifier, WAREHOUSE_TABLES["fact_payment"].columns))
    pipeline.sql("DROP INDEX fact_payment_version_key")
    pipeline.sql(sql.SQL(
        "INSERT INTO fact_payment ({cols}) SELECT {cols} FROM fact_payment"
        " WHERE payment_record_id = (SELECT min(payment_record_id) FROM fact_payment)"
    ).format(cols=columns))  # fmt: skip
    # the older batch loaded after the newer one
    pipeline.sql(
        "UPDATE etl.load_ledger SET loaded_at = now() + interval '1 hour' WHERE batch_id = %s",
        pipeline.first,
    )
    # an ingestion manifest older than the newest processed batch that nobody transformed,
    # which also breaks the chain of the one after it
    first_ts, second_ts = layout.batch_ts_of(pipeline.first), layout.batch_ts_of(pipeline.second)
    early = layout.batch_id_for(first_ts + (second_ts - first_ts) / 2)  # both may share a second
    assert pipeline.first < early < pipeline.second
    manifest = ingestion.get_json(layout.manifest_key(pipeline.second)) or {}
    ingestion.put_json(layout.manifest_key(early), {**manifest, "batch_id": early, "tables": {}})
    before = pipeline.counts()

    found = pipeline.doctor()
    repaired = pipeline.doctor("--repair")

    lines = found.stdout.splitlines()
    assert found.returncode == 1
    assert (
        f"chain: ingestion manifest {pipeline.second} follows {pipeline.first}, not {early};"
        in found.stdout
    )
    assert (
        f"transform-gap: 1 ingestion batch(es) older than the newest processed batch"
        f" {pipeline.second} were never transformed: {early};" in found.stdout
    )
    assert "ledger: the ledger was not written in batch order;" in found.stdout
    assert (
        "warehouse-keys: fact_payment: 1 row(s) repeat a (payment_id, last_updated_date,"
        " last_updated_time) already present;" in found.stdout
    )
    assert lines[-1] == "doctor: 4 broken invariant(s)", found.stdout
    assert repaired.returncode == 1
    assert "repair plan: nothing safe" in repaired.stdout
    assert repaired.stdout.splitlines()[-1] == "doctor: 4 broken invariant(s)"
    assert pipeline.counts() == before  # never a warehouse row deleted
    assert not list(processed.keys("_quarantine/"))


def test_a_ledger_row_without_its_batch_and_a_skipped_batch_are_named(pipeline: Pipeline) -> None:
    pipeline.sql("DELETE FROM etl.load_ledger WHERE batch_id = %s", pipeline.first)
    pipeline.sql(
        "INSERT INTO etl.load_ledger (batch_id, seconds, tables) VALUES (%s, 0, '{}')", LATER
    )

    found = pipeline.doctor()

    assert found.returncode == 1
    assert (
        f"ledger: loaded batch {LATER} has no processed manifest and no ingestion batch;"
        " the record of a loaded batch is gone; restore its ingestion manifest" in found.stdout
    )
    assert (
        f"ledger: 1 processed batch(es) older than the newest loaded batch {LATER} were never"
        f" loaded: {pipeline.first};" in found.stdout
    )


def test_a_manifest_of_an_unknown_version_is_named(pipeline: Pipeline) -> None:
    key = layout.manifest_key(pipeline.second)
    manifest = pipeline.processed.get_json(key) or {}
    pipeline.processed.put_json(key, {**manifest, "format_version": 7})

    found = pipeline.doctor()

    assert found.returncode == 1
    assert (
        f"manifest-unreadable: s3://{pipeline.processed.bucket}/{key}: processed manifest"
        " format_version 7 is not understood (this code reads version(s) 1);" in found.stdout
    )


def test_a_new_lake_is_healthy_once_the_warehouse_exists(
    stack: StackEndpoints, settings: Settings
) -> None:
    env = {**env_for(stack, settings), "DOCTOR_MIN_AGE_SECONDS": "0"}

    before = run_etl(env, "doctor")
    init_warehouse(settings)
    after = run_etl(env, "doctor")
    negative = run_etl({**env, "DOCTOR_MIN_AGE_SECONDS": "-1"}, "doctor")

    assert before.returncode == 1
    assert before.stdout.startswith(
        "warehouse-tables: 11 warehouse table(s) do not exist: dim_counterparty, dim_currency,"
        " dim_date and 8 more; load fails until they do; run `python -m etl init-warehouse`"
    )
    assert after.returncode == 0, after.stdout
    assert after.stdout == (
        "doctor: healthy: 0 ingestion batch(es) (0 pending transform), 0 processed"
        " (0 pending load), 0 loaded\n"
    )
    assert negative.returncode == 1
    assert negative.stderr == "error: DOCTOR_MIN_AGE_SECONDS must not be negative\n"
