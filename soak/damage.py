"""Damage from the world outside, each answered with the documented command only.

Where soak.faults breaks the pipeline's own processes, these kinds break its inputs and
its outputs, as bad source data and hands do:

- `poison_row`: a fact source row gets an impossible date (a new version, before the
  cycle's stages). Transform must set that version aside and every other change must flow;
  two cycles later the row is corrected (a newer version), which must load normally. The
  SQL expectation leaves impossible dates out, so a set-aside version is expected absent.
- `lost_processed_file`: a parquet file a processed manifest names is deleted or truncated
  before the stages; the operator's answer is `python -m etl doctor --repair`, which must
  rebuild it from the ingestion bucket.
- `garbage_state`: `_state/watermarks.json` or `_state/transform.json` is overwritten with
  bytes that are not JSON; the stage that reads it must fail in one `error:` line (never a
  traceback), and `doctor --repair` must rebuild it.
- `warehouse_damage`: after a successful load, the newest versions of a few fact rows are
  deleted and a dimension value is defaced; `python -m etl reconcile` must name the tables,
  `python -m etl replay --tables <them>` must restore them and reconcile must then pass.

The answer's result is the fault's companion outcome: anything but success is a finding.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from etl import layout
from etl.transform.batch import STATE_KEY as TRANSFORM_STATE_KEY
from soak import plan
from soak.faults import FaultRecord
from soak.stages import REPO_ROOT, STAGE_TIMEOUT, StageOutcome
from soak.verify import Lake

# fact source table -> (its key, the date columns held as text, one of which is poisoned)
POISONABLE = {
    "sales_order": ("sales_order_id", ("agreed_delivery_date", "agreed_payment_date")),
    "purchase_order": ("purchase_order_id", ("agreed_delivery_date", "agreed_payment_date")),
    "payment": ("payment_id", ("payment_date",)),
}
IMPOSSIBLE_DATES = ("2024-02-30", "2023-13-01", "tomorrow", "31/12/2024")
CORRECT_AFTER = 2  # cycles a poisoned row stays wrong before the source is corrected
DEFACEABLE = {  # warehouse dimension -> (its key, a text column)
    "dim_counterparty": ("counterparty_id", "counterparty_legal_name"),
    "dim_staff": ("staff_id", "first_name"),
    "dim_design": ("design_id", "design_name"),
    "dim_location": ("location_id", "address_line_1"),
}
FACT_KEYS = {"fact_sales_order": "sales_order_id",
             "fact_purchase_orders": "purchase_order_id", "fact_payment": "payment_id"}  # fmt: skip
DAMAGED_ROWS = 5


@dataclass(frozen=True)
class Poisoned:
    cycle: int
    table: str
    key: int
    column: str


def run_etl(args: Sequence[str], env: Mapping[str, str]) -> tuple[StageOutcome, str]:
    """`python -m etl <args>`, as an operator types it: (outcome, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "etl", *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=STAGE_TIMEOUT,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    error = errors[-1] if errors else (done.stderr.strip().splitlines() or [""])[-1]
    name = " ".join(args)
    return StageOutcome(name, done.returncode, error, time.perf_counter() - started), done.stdout


def _failed(name: str, why: str) -> StageOutcome:
    return StageOutcome(name, 1, why, 0.0)


@dataclass
class Damager:
    lake: Lake
    env: Mapping[str, str]
    rng: random.Random
    poisoned: list[Poisoned] = field(default_factory=list)

    # ---------------------------------------------------------------- poison_row

    def poison(self, cycle: int, clock: datetime) -> FaultRecord:
        table = self.rng.choice(sorted(POISONABLE))
        key, columns = POISONABLE[table]
        column = self.rng.choice(columns)
        value = self.rng.choice(IMPOSSIBLE_DATES)
        with psycopg.connect(self.lake.source_url) as conn:
            row = conn.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = %s, last_updated = %s WHERE {k} = "
                    "(SELECT {k} FROM {t} ORDER BY random() LIMIT 1) RETURNING {k}"
                ).format(t=sql.Identifier(table), c=sql.Identifier(column), k=sql.Identifier(key)),
                (value, clock),
            ).fetchone()
        if row is None:
            return FaultRecord(cycle, plan.POISON_ROW, "source", "-", False, "no row")
        self.poisoned.append(Poisoned(cycle, table, int(row[0]), column))
        return FaultRecord(
            cycle, plan.POISON_ROW, "source", f"{table}.{column}={value!r}", True, "poisoned"
        )

    def flowed(self, record: FaultRecord, stages: Sequence[StageOutcome]) -> FaultRecord:
        """A poisoned row must not stop anything: every stage of the cycle succeeded."""
        failed = [s for s in stages if not s.ok]
        answer = failed[0] if failed else StageOutcome("the cycle's stages", 0, "", 0.0)
        return _with_answer(record, answer)

    def correct_poisoned(self, cycle: int, clock: datetime) -> int:
        """The source corrects rows poisoned CORRECT_AFTER cycles ago (a newer version)."""
        due = [p for p in self.poisoned if cycle - p.cycle >= CORRECT_AFTER]
        with psycopg.connect(self.lake.source_url) as conn:
            for p in due:
                conn.execute(
                    sql.SQL("UPDATE {t} SET {c} = %s, last_updated = %s WHERE {k} = %s").format(
                        t=sql.Identifier(p.table),
                        c=sql.Identifier(p.column),
                        k=sql.Identifier(POISONABLE[p.table][0]),
                    ),
                    ((clock.date() + timedelta(days=7)).isoformat(), clock, p.key),
                )
        self.poisoned = [p for p in self.poisoned if p not in due]
        return len(due)

    # ---------------------------------------------------- lost_processed_file, garbage_state

    def lose_processed_file(self, cycle: int) -> FaultRecord:
        processed = self.lake.processed
        files = sorted(
            entry["file"]
            for key in processed.keys(layout.MANIFEST_PREFIX)
            for entry in (processed.get_json(key) or {}).get("tables", {}).values()
        )
        if not files:
            return FaultRecord(cycle, plan.LOST_PROCESSED_FILE, "processed", "-", False, "none")
        key = self.rng.choice(files[-12:] if self.rng.random() < 0.7 else files)  # often pending
        if self.rng.random() < 0.5:
            processed.delete(key)
            how = "deleted"
        else:
            processed.put_bytes(key, (processed.get_bytes(key) or b"")[:64])
            how = "truncated"
        return FaultRecord(cycle, plan.LOST_PROCESSED_FILE, "processed", f"{how} {key}", True, how)

    def garble_state(self, cycle: int) -> FaultRecord:
        store, key = self.rng.choice(
            ((self.lake.ingestion, layout.STATE_KEY), (self.lake.processed, TRANSFORM_STATE_KEY))
        )
        if store.get_bytes(key) is None:
            return FaultRecord(cycle, plan.GARBAGE_STATE, "state", key, False, "no state yet")
        store.put_bytes(key, self.rng.choice((b'{"batch_id": "20', b"\x00\xffgarbage", b"[]")))
        return FaultRecord(cycle, plan.GARBAGE_STATE, "state", key, True, "garbled")

    def repair(self, record: FaultRecord, stages: Sequence[StageOutcome]) -> FaultRecord:
        """A stage that met the damage must have failed in one `error:` line; then the
        operator runs `python -m etl doctor --repair`, which must end healthy."""
        crashed = [s for s in stages if not s.ok and not s.error.startswith("error: ")]
        if crashed:
            answer = _failed(crashed[0].stage, f"not a one-line error: {crashed[0].error}")
        else:
            answer, _ = run_etl(("doctor", "--repair"), {**self.env, "DOCTOR_MIN_AGE_SECONDS": "0"})
        return _with_answer(record, answer)

    # ---------------------------------------------------------------- warehouse_damage

    def damage_warehouse(self, cycle: int) -> FaultRecord:
        fact = self.rng.choice(sorted(FACT_KEYS))
        dim = self.rng.choice(sorted(DEFACEABLE))
        key, column = DEFACEABLE[dim]
        with psycopg.connect(self.lake.warehouse_url) as conn:
            deleted = conn.execute(
                sql.SQL(
                    "DELETE FROM {t} WHERE ctid IN (SELECT DISTINCT ON ({k}) ctid FROM {t}"
                    " ORDER BY {k}, last_updated_date DESC, last_updated_time DESC LIMIT %s)"
                ).format(t=sql.Identifier(fact), k=sql.Identifier(FACT_KEYS[fact])),
                (DAMAGED_ROWS,),
            ).rowcount
            defaced = conn.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = 'defaced by hand' WHERE {k} = (SELECT min({k}) FROM {t})"
                ).format(t=sql.Identifier(dim), c=sql.Identifier(column), k=sql.Identifier(key)),
            ).rowcount
        injected = bool(deleted and defaced)
        at = f"{deleted} {fact} row(s) deleted, {dim}.{column} defaced"
        return FaultRecord(cycle, plan.WAREHOUSE_DAMAGE, "warehouse", at, injected, "damaged")

    def replay(self, record: FaultRecord) -> FaultRecord:
        """reconcile names the damaged tables; replay them; reconcile passes."""
        found, _ = run_etl(("reconcile",), self.env)
        marker = "differs from the source in "
        if found.ok or marker not in found.error:
            return _with_answer(record, _failed("reconcile", f"damage not named: {found.error}"))
        tables = found.error.split(marker, 1)[1].split(";", 1)[0]
        replayed, _ = run_etl(("replay", "--tables", tables), self.env)
        if not replayed.ok:
            return _with_answer(record, replayed)
        after, stdout = run_etl(("reconcile",), self.env)
        if not after.ok:
            after = _failed("reconcile after replay", after.error or stdout.strip()[-200:])
        return _with_answer(record, after)


def _with_answer(record: FaultRecord, answer: StageOutcome) -> FaultRecord:
    return FaultRecord(
        record.cycle, record.kind, record.stage, record.at, record.injected,
        "answered" if answer.ok else "not answered", answer,
    )  # fmt: skip
