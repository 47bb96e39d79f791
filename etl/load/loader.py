"""Load processed batches, oldest first, each in one transaction with its ledger row.

Per table: COPY the batch's parquet (as CSV, streamed a record batch at a time) into a
temporary staging table, then one set-based statement: dimensions upserted on their
natural id (rows that did not change are not rewritten), facts inserted where their
(source id, last_updated) version is not already present. Dimensions go first, so the
warehouse's foreign keys hold at every commit. A failure anywhere rolls the whole batch
back; the next load retries it and ends exactly as if nothing had failed.

One loader at a time: the run holds the load lease (etl.lease), and each batch's
transaction re-checks it (share-locking the lease row) just before it records its ledger
row and commits. The batch connection's `idle_in_transaction_session_timeout` is the lease
timeout, so a loader paused inside a transaction is rolled back by the server and cannot
commit afterwards, nor keep its locks from its successor.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from etl import bookkeeping, layout
from etl.config import SET_ASIDE, Settings
from etl.database import connect
from etl.drift import column_drift
from etl.errors import (
    ConfigError,
    EtlError,
    SchemaDriftError,
    is_transient_database_error,
    one_line,
)
from etl.lease import Lease, hold
from etl.load import ledger, too_large, waiting
from etl.load.target import Target
from etl.logs import log_event
from etl.manifests import processed as processed_manifest
from etl.manifests.processed import ProcessedManifest, ProcessedTableEntry
from etl.storage import ObjectStore
from etl.transform.rejects import RejectLog, summary
from etl.warehouse import WAREHOUSE_TABLES, WarehouseTable

logger = logging.getLogger("etl.load")

Connection = psycopg.Connection[tuple[Any, ...]]
StepHook = Callable[[str], None]
COPY_CHUNK_ROWS = 65_536
DOWNLOAD_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class LoadResult:
    batch_id: str
    tables: dict[str, dict[str, int]]
    seconds: float


def stage(
    conn: Connection,
    target: Target,
    table: WarehouseTable,
    data: pq.ParquetFile | None,
    limits: Sequence[too_large.Limit] = (),
    rejects: RejectLog | None = None,
) -> sql.Identifier:
    """A temporary copy of the target's columns holding this batch's rows (none without
    `data`), copied one record batch at a time; rows with a value beyond the target
    column's `limits` go to `rejects` instead (etl.load.too_large)."""
    staging = sql.Identifier(f"stage_{table.name}")
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            staging, target.columns(table), target.table(table.name)
        )
    )
    if data is None:
        return staging
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
        staging, target.columns(table)
    )
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for index, whole in enumerate(data.iter_batches(batch_size=COPY_CHUNK_ROWS)):
            chunk = too_large.split(whole, table, list(limits), rejects or RejectLog())
            buffer = io.BytesIO()
            pacsv.write_csv(chunk, buffer, pacsv.WriteOptions(include_header=index == 0))
            copy.write(buffer.getvalue())
    return staging


def upsert_dimension(
    conn: Connection, target: Target, table: WarehouseTable, staging: sql.Identifier
) -> dict[str, int]:
    key = [target.column(table.name, c) for c in table.key]
    values = [c for c in table.columns if c not in table.key]
    changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(target.column(table.name, c)) for c in values),
        sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{}").format(target.column(table.name, c)) for c in values
        ),
    )
    statement = sql.SQL(
        "WITH written AS (INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging}"
        " ORDER BY {key} ON CONFLICT ({key}) DO UPDATE SET {assign} WHERE {changed}"
        " RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
    ).format(
        target=target.table(table.name),
        cols=target.columns(table),
        staging=staging,
        key=sql.SQL(", ").join(key),
        assign=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(target.column(table.name, c)) for c in values
        ),
        changed=changed,
    )
    counts = conn.execute(statement).fetchone()
    assert counts is not None
    return {"inserted": int(counts[0]), "updated": int(counts[1])}


def insert_new_versions(
    conn: Connection, target: Target, table: WarehouseTable, staging: sql.Identifier
) -> dict[str, int]:
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = s.{0}").format(target.column(table.name, c)) for c in table.key
    )
    statement = sql.SQL(
        "INSERT INTO {target} ({cols}) SELECT {s_cols} FROM {staging} AS s"
        " WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match}) ORDER BY {s_key}"
    ).format(
        target=target.table(table.name),
        cols=target.columns(table),
        s_cols=sql.SQL(", ").join(
            sql.SQL("s.{}").format(target.column(table.name, c)) for c in table.columns
        ),
        staging=staging,
        match=match,
        s_key=sql.SQL(", ").join(
            sql.SQL("s.{}").format(target.column(table.name, c)) for c in table.key
        ),
    )
    return {"inserted": conn.execute(statement).rowcount, "updated": 0}


def insert_facts(
    conn: Connection,
    target: Target,
    table: WarehouseTable,
    staging: sql.Identifier,
    batch_id: str,
    set_aside: bool,
    has_waiting: bool = False,
) -> dict[str, int]:
    """insert_new_versions, after the versions waiting for a dimension row (if this fact
    has a waiting table) are staged again with the batch; those whose dimension row is
    still missing move back to waiting. Under set_aside a new version whose dimension row
    is missing waits too (etl.load.waiting); under fail it fails the batch (the foreign
    key names the fact), while versions that were waiting already keep waiting: a change
    of policy neither strands them nor blocks the batches behind them."""
    extra: dict[str, int] = {}
    if has_waiting or set_aside:
        waiting.add_since_column(conn, staging)
    if has_waiting:
        retried = waiting.restage(conn, target, table, staging)
        extra = {"retried": retried} if retried else {}
    if not (set_aside or has_waiting):
        return insert_new_versions(conn, target, table, staging)
    try:
        with conn.transaction():  # a savepoint: only a missing dimension row is handled below
            return {**insert_new_versions(conn, target, table, staging), **extra}
    except psycopg.errors.ForeignKeyViolation:
        moved = waiting.set_aside(conn, target, table, staging, batch_id, not set_aside)
        counts = insert_new_versions(conn, target, table, staging)
        return {**counts, **extra, "waiting": moved}


def download_processed(
    processed: ObjectStore, entry: ProcessedTableEntry, into: IO[bytes]
) -> pq.ParquetFile:
    """A processed file, streamed to local disk (parquet is read from its footer, so it
    needs a seekable file) and checked against the sha256 its manifest recorded."""
    source = f"s3://{processed.bucket}/{entry['file']}"
    reader = processed.open(entry["file"])
    if reader is None:
        raise EtlError(f"{source} is listed in its manifest but missing")
    with reader:
        while chunk := reader.read(DOWNLOAD_BUFFER):
            into.write(chunk)
    if reader.sha256 != entry["sha256"]:
        raise EtlError(
            f"{source} does not match the sha256 in its manifest (changed after transform)"
        )
    into.seek(0)
    return pq.ParquetFile(into)


def check_columns(table: WarehouseTable, schema: pa.Schema, source: str) -> None:
    """COPY matches columns by position, so a processed file whose columns are renamed,
    reordered or retyped would load into the wrong columns without a word: refuse it,
    naming table and column, before anything is written."""
    detail = column_drift(list(table.columns), schema.names)
    if detail:
        raise SchemaDriftError(f"{table.name}: {detail} in {source}")
    for field in table.schema:
        found = schema.field(field.name).type
        if found != field.type:
            raise SchemaDriftError(
                f"{table.name}.{field.name}: type {found}, expected {field.type} in {source}"
            )


def load_batch(
    conn: Connection,
    target: Target,
    processed: ObjectStore,
    manifest: ProcessedManifest,
    step: StepHook,
    lease: Lease | None = None,
    policy: str = SET_ASIDE,
    replay: tuple[str, ...] = (),
    limits: Mapping[str, list[too_large.Limit]] | None = None,
) -> LoadResult | None:
    """Load one processed batch in one transaction; None if it was loaded before. With
    `replay` (warehouse tables), apply only those tables of a batch that was loaded before,
    again, leaving the ledger as it is: dimensions take the batch's values, fact versions
    the warehouse lost are inserted, none twice.

    The batch's files are downloaded (and checked) before the transaction opens: a slow
    download inside it would leave the session idle in transaction, which the server ends
    after the lease timeout, and a large batch would then fail on every retry."""
    started = time.perf_counter()
    batch_id = manifest["batch_id"]
    tables: dict[str, dict[str, int]] = {}
    current = "the ledger"
    with ExitStack() as files:
        downloaded: dict[str, pq.ParquetFile] = {}
        for name in WAREHOUSE_TABLES:  # dims first, then facts
            entry = manifest["tables"].get(name)
            if entry is None or (replay and name not in replay):
                continue
            local = files.enter_context(tempfile.TemporaryFile())
            downloaded[name] = download_processed(processed, entry, local)
            check_columns(
                WAREHOUSE_TABLES[name],
                downloaded[name].schema_arrow,
                f"s3://{processed.bucket}/{entry['file']}",
            )
        try:
            with conn.transaction():
                if ledger.is_loaded(conn, batch_id) != bool(replay):
                    return None
                rejects = RejectLog(policy, batch_id)
                # a replay re-applies what was loaded: what is set aside stays as it is
                open_set_aside = not replay and too_large.any_open(conn)
                has_waiting = waiting.present(conn)
                for name, table in WAREHOUSE_TABLES.items():  # dims first, then facts
                    data = downloaded.get(name)
                    set_aside = policy == SET_ASIDE and table.kind == "fact"
                    retry = set_aside or name in has_waiting
                    if (data is None and not retry) or (replay and name not in replay):
                        continue
                    current = name
                    staging = stage(
                        conn, target, table, data, (limits or {}).get(name, ()), rejects
                    )
                    if open_set_aside:
                        too_large.close_loaded(conn, target, table, staging)
                    counts = (
                        upsert_dimension(conn, target, table, staging)
                        if table.kind == "dim"
                        else insert_facts(
                            conn, target, table, staging, batch_id, set_aside, name in has_waiting
                        )
                    )
                    if data is None and not any(counts.values()):
                        continue
                    staged = 0 if data is None else data.metadata.num_rows
                    tables[name] = {"staged": staged, **counts}
                    step(f"table:{name}")
                current = "the ledger"
                for name, n in summary(rejects.found()).items():
                    tables.setdefault(name, {"staged": 0, "inserted": 0, "updated": 0})
                    tables[name]["set_aside"] = n
                if not replay:
                    too_large.record(conn, rejects.found())
                if lease is not None:
                    lease.check_in(conn, f"committing batch {batch_id}")
                seconds = time.perf_counter() - started
                if not replay:
                    ledger.record(conn, batch_id, seconds, tables)
                step("ledger_written")
        except psycopg.Error as error:
            if lease is not None:  # the server ended a paused loader's transaction: say so
                lease.check(f"batch {batch_id} (its transaction failed and was rolled back)")
            raise EtlError(
                f"loading batch {batch_id} into {current} failed, rolled back: {one_line(error)}",
                transient=is_transient_database_error(error),
            ) from error
    log_event(logger, "batch_loaded", batch_id=batch_id,
              inserted=sum(t["inserted"] for t in tables.values()), seconds=seconds)  # fmt: skip
    return LoadResult(batch_id, tables, seconds)


def connect_warehouse(settings: Settings) -> Connection:
    return connect(settings.warehouse_db_url, "the warehouse")


def load_pending(
    settings: Settings, s3_client: Any, on_step: StepHook | None = None
) -> list[LoadResult]:
    """Load every processed batch not in the ledger yet, oldest first, holding the load
    lease."""
    settings.require("warehouse_db_url", "processed_bucket")
    with hold(settings, "load") as lease:
        return _load_pending(settings, s3_client, on_step, lease)


def prepare_session(
    conn: Connection, settings: Settings, target: Target
) -> dict[str, list[too_large.Limit]]:
    """Before a loader's first batch: a transaction left open by a paused loader is rolled
    back by the server; the warehouse has the columns we write; the bookkeeping exists.
    Returns the target columns narrower than the contract (etl.load.too_large)."""
    timeout = str(int(settings.lease_timeout.total_seconds() * 1000))
    conn.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)", (timeout,))
    bookkeeping.bounded_locks(conn, settings.lease_wait)
    for warning in target.check(conn):
        log_event(logger, "warehouse_warning", logging.WARNING, detail=warning)
    conn.commit()
    ledger.ensure_ledger(conn)
    if settings.bad_row_policy == SET_ASIDE:
        waiting.ensure(conn, target)
    too_large.ensure(conn)
    limits = too_large.read_limits(conn, target)
    conn.commit()
    return limits


def _load_pending(
    settings: Settings, s3_client: Any, on_step: StepHook | None, lease: Lease
) -> list[LoadResult]:
    processed = ObjectStore(s3_client, settings.processed_bucket)
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    with connect_warehouse(settings) as conn:
        limits = prepare_session(conn, settings, target)
        last = ledger.last_loaded(conn)
        conn.commit()
        start_after = layout.manifest_key(last) if last else ""
        keys = processed.keys(layout.MANIFEST_PREFIX, start_after=start_after)
        return apply_batches(conn, settings, target, processed, keys, on_step, lease,
                             limits=limits)  # fmt: skip


def apply_batches(
    conn: Connection,
    settings: Settings,
    target: Target,
    processed: ObjectStore,
    manifest_keys: Iterable[str],
    on_step: StepHook | None,
    lease: Lease,
    replay: tuple[str, ...] = (),
    limits: Mapping[str, list[too_large.Limit]] | None = None,
) -> list[LoadResult]:
    """load_batch for each manifest, in order; the batches it applied."""
    step = on_step or (lambda _: None)
    results = []
    for key in manifest_keys:
        manifest = processed_manifest.read_key(processed, key)
        assert manifest is not None
        result = load_batch(conn, target, processed, manifest, step, lease,
                            settings.bad_row_policy, replay, limits)  # fmt: skip
        if result is not None:
            results.append(result)
    return results


def replay(
    settings: Settings,
    s3_client: Any,
    tables: tuple[str, ...],
    from_batch: str | None = None,
    on_step: StepHook | None = None,
) -> list[LoadResult]:
    """Apply the loaded processed batches again (from `from_batch`, else the first) to
    `tables` of the warehouse, oldest first, each in one transaction, holding the load
    lease: what a damaged warehouse table needs to match its batches again. Dimensions end
    at their newest values, missing fact versions are inserted, nothing is duplicated; the
    ledger and batches not loaded yet are left to `load`."""
    settings.require("warehouse_db_url", "processed_bucket")
    unknown = [t for t in tables if t not in WAREHOUSE_TABLES]
    if unknown or not tables:
        raise EtlError(
            f"replay: {', '.join(unknown) or 'no table'} is not a warehouse table"
            f" (one of {', '.join(WAREHOUSE_TABLES)}, or --all)"
        )
    with hold(settings, "load") as lease:
        processed = ObjectStore(s3_client, settings.processed_bucket)
        target = Target(settings.warehouse_schema, settings.warehouse_names)
        with connect_warehouse(settings) as conn:
            limits = prepare_session(conn, settings, target)
            loaded = set(ledger.loaded_batches(conn))
            conn.commit()
            keys = _replay_keys(processed, loaded, from_batch)
            return apply_batches(
                conn, settings, target, processed, keys, on_step, lease, tables, limits
            )


def _replay_keys(processed: ObjectStore, loaded: set[str], from_batch: str | None) -> list[str]:
    """The manifests of the loaded batches to apply again, oldest first; refused in one
    line when `from_batch` is no batch id, when nothing loaded is that new, or when a loaded
    batch has lost its manifest (dimensions would end at an older value)."""
    if from_batch:
        try:
            layout.batch_ts_of(from_batch)
        except ValueError:
            raise ConfigError(
                f"replay --from {from_batch!r} is not a batch id (YYYYMMDDTHHMMSSffffffZ,"
                " as `python -m etl status` shows them)"
            ) from None
    wanted = sorted(b for b in loaded if not from_batch or b >= from_batch)
    if not wanted:
        raise ConfigError(f"replay: no loaded batch{' from ' + from_batch if from_batch else ''}")
    present = {layout.batch_id_of_manifest(k) for k in processed.keys(layout.MANIFEST_PREFIX)}
    lost = [b for b in wanted if b not in present]
    if lost:
        raise EtlError(
            f"replay: loaded batch(es) {', '.join(lost[:3])} have no processed manifest;"
            " `python -m etl doctor --repair` rebuilds them from the ingestion bucket first"
        )
    return [layout.manifest_key(b) for b in wanted]


def init_warehouse(settings: Settings) -> str:
    """Create the warehouse schema where none exists; leave a prepared one alone."""
    settings.require("warehouse_db_url")
    target = Target(settings.warehouse_schema, settings.warehouse_names)
    with connect_warehouse(settings) as conn:
        existing = target.existing_tables(conn)
        expected = {settings.warehouse_names.table(t) for t in WAREHOUSE_TABLES}
        if existing == expected:
            target.check(conn)
            message = "warehouse already has its 11 tables; left as it is"
        elif existing:
            missing = ", ".join(sorted(expected - existing))
            raise EtlError(
                f"warehouse is partly there (missing {missing}); refusing to guess, create them by hand"
            )
        else:
            with conn.transaction():
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(settings.warehouse_schema)
                    )
                )
                for statement in target.create_ddl():
                    conn.execute(statement)
            message = "warehouse created: 8 dimensions, 3 facts, version indexes"
        ledger.ensure_ledger(conn)
    return message
