"""One processed batch into the warehouse, in one transaction with its ledger row.

Per table: COPY the batch's parquet (as CSV, streamed a record batch at a time) into a
temporary staging table, then one set-based statement: dimensions upserted on their
natural id (rows that did not change are not rewritten), facts inserted where their
(source id, last_updated) version is not already present. Dimensions go first, so the
warehouse's foreign keys hold at every commit. A failure anywhere rolls the whole batch
back; the next load retries it and ends exactly as if nothing had failed.

The transaction re-checks the load lease (share-locking the lease row, etl.lease) just
before it records its ledger row and commits, so a loader that lost the lease while
paused cannot commit a batch its successor also loads.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from etl.config import SET_ASIDE
from etl.drift import column_drift
from etl.errors import EtlError, SchemaDriftError, is_transient_database_error, one_line
from etl.lease import Lease
from etl.load import ledger, too_large, waiting
from etl.load.target import Target
from etl.logs import log_event
from etl.manifests.processed import ProcessedManifest, ProcessedTableEntry
from etl.storage import ObjectStore
from etl.transform.rejects import RejectLog, summary
from etl.warehouse import WAREHOUSE_TABLES, WarehouseTable

logger = logging.getLogger("etl.load")

Connection = psycopg.Connection[tuple[Any, ...]]
StepHook = Callable[[str], None]
Limits = Mapping[str, Sequence[too_large.Limit]]
Counts = dict[str, dict[str, int]]
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


@dataclass
class _Place:
    """Where a batch's transaction is, for the one line that says where it failed."""

    name: str = "the ledger"


def load_batch(
    conn: Connection,
    target: Target,
    processed: ObjectStore,
    manifest: ProcessedManifest,
    step: StepHook,
    lease: Lease | None = None,
    policy: str = SET_ASIDE,
    replay: tuple[str, ...] = (),
    limits: Limits | None = None,
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
    place = _Place()
    with _downloaded(processed, manifest, replay) as downloaded:
        try:
            with conn.transaction():
                if ledger.is_loaded(conn, batch_id) != bool(replay):
                    return None
                rejects = RejectLog(policy, batch_id)
                tables = _apply_tables(conn, target, downloaded, rejects, step, place, replay,
                                       limits or {})  # fmt: skip
                place.name = "the ledger"
                seconds = _record_batch(conn, rejects, tables, lease, replay, started)
                step("ledger_written")
        except psycopg.Error as error:
            if lease is not None:  # the server ended a paused loader's transaction: say so
                lease.check(f"batch {batch_id} (its transaction failed and was rolled back)")
            raise EtlError(
                f"loading batch {batch_id} into {place.name} failed, rolled back: {one_line(error)}",
                transient=is_transient_database_error(error),
            ) from error
    log_event(logger, "batch_loaded", batch_id=batch_id,
              inserted=sum(t["inserted"] for t in tables.values()), seconds=seconds)  # fmt: skip
    return LoadResult(batch_id, tables, seconds)


@contextmanager
def _downloaded(
    processed: ObjectStore, manifest: ProcessedManifest, replay: tuple[str, ...]
) -> Iterator[dict[str, pq.ParquetFile]]:
    """The batch's files (those of the `replay` tables only, in a replay), each in a local
    temporary file removed when the block ends, checked against the warehouse's columns."""
    downloaded: dict[str, pq.ParquetFile] = {}
    with ExitStack() as files:
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
        yield downloaded


def _apply_tables(
    conn: Connection,
    target: Target,
    downloaded: Mapping[str, pq.ParquetFile],
    rejects: RejectLog,
    step: StepHook,
    place: _Place,
    replay: tuple[str, ...],
    limits: Limits,
) -> Counts:
    """Stage and write each table of the batch, dimensions first, inside its transaction;
    a fact with versions waiting for a dimension row is tried again even when the batch
    has no file for it. Returns the counts per table written."""
    tables: Counts = {}
    set_aside_policy = rejects.policy == SET_ASIDE
    # a replay re-applies what was loaded: what is set aside stays as it is
    open_set_aside = not replay and too_large.any_open(conn)
    has_waiting = waiting.present(conn)
    for name, table in WAREHOUSE_TABLES.items():  # dims first, then facts
        data = downloaded.get(name)
        set_aside = set_aside_policy and table.kind == "fact"
        retry = set_aside or name in has_waiting
        if (data is None and not retry) or (replay and name not in replay):
            continue
        place.name = name
        staging = stage(conn, target, table, data, limits.get(name, ()), rejects)
        if open_set_aside:
            too_large.close_loaded(conn, target, table, staging)
        counts = (
            upsert_dimension(conn, target, table, staging)
            if table.kind == "dim"
            else insert_facts(
                conn, target, table, staging, rejects.batch_id, set_aside, name in has_waiting
            )
        )
        if data is None and not any(counts.values()):
            continue
        staged = 0 if data is None else data.metadata.num_rows
        tables[name] = {"staged": staged, **counts}
        step(f"table:{name}")
    return tables


def _record_batch(
    conn: Connection,
    rejects: RejectLog,
    tables: Counts,
    lease: Lease | None,
    replay: tuple[str, ...],
    started: float,
) -> float:
    """The end of a batch's transaction: what it set aside counted and kept, the lease
    re-checked in the transaction, the ledger row written (not in a replay). Returns the
    batch's seconds, as the ledger records them."""
    batch_id = rejects.batch_id
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
    return seconds
