"""What every reconcile check shares: the horizon it compares as of, and its verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from etl.ingest.watermark import Bookmark, IngestState
from etl.tables import SOURCE_TABLES

Connection = Any  # psycopg.Connection[tuple[Any, ...]]
EXAMPLES = 3  # ids named per differing table
Version = tuple[int, datetime]  # (source id, last_updated)


@dataclass(frozen=True)
class TableCheck:
    """One warehouse table's verdict: counts compared and a few ids that differ."""

    table: str
    source_rows: int
    warehouse_rows: int
    missing: Sequence[
        object
    ] = ()  # in the source, not (or not as the newest version) in the warehouse
    extra: Sequence[object] = ()  # in the warehouse, not in the source
    changed: Sequence[object] = ()  # in both, with other values
    duplicated: Sequence[object] = ()  # a fact version held more than once
    note: str = ""
    set_aside: int = 0  # ids left out because their current version is set aside or waiting

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.duplicated) and (
            self.source_rows == self.warehouse_rows
        )

    def describe(self) -> str:
        counts = f"source {self.source_rows} warehouse {self.warehouse_rows}"
        notes = [self.note] if self.note else []
        if self.set_aside:
            notes.append(f"{self.set_aside} set aside left out (etl status lists them)")
        if self.ok:
            return f"{self.table}: ok ({'; '.join([counts, *notes])})"
        parts = [
            f"{label} ids {_examples(ids)}"
            for label, ids in (
                ("missing", self.missing),
                ("extra", self.extra),
                ("changed", self.changed),
                ("duplicated", self.duplicated),
            )
            if ids
        ]
        return f"{self.table}: DIFFERS ({counts}){': ' + '; '.join(parts) if parts else ''}"


def _examples(ids: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in list(ids)[:EXAMPLES])
    return shown + (f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else "")


@dataclass(frozen=True)
class Reconciliation:
    batch_id: str | None  # the last loaded batch the comparison is as of
    checks: list[TableCheck] = field(default_factory=list)

    @property
    def differing(self) -> list[str]:
        return [check.table for check in self.checks if not check.ok]

    @property
    def ok(self) -> bool:
        return not self.differing


@dataclass(frozen=True)
class Horizon:
    """What the last loaded batch had extracted of one source table: every version up to its
    watermark, except inside the overlap window behind it, where only the versions the
    bookmark lists as seen are certain (a late commit there arrives with the next batch)."""

    mark: Bookmark
    overlap: timedelta

    @property
    def floor(self) -> datetime | None:
        return None if self.mark.value is None else self.mark.value - self.overlap

    def is_late(self, source_id: int, last_updated: datetime) -> bool:
        """True when the warehouse may not hold this version yet, and cannot be asked to."""
        if self.mark.value is None or self.floor is None:
            return True
        if last_updated > self.mark.value:
            return True
        return last_updated > self.floor and (source_id, last_updated) not in self.mark.seen


def horizons(state: IngestState, overlap: timedelta) -> dict[str, Horizon]:
    return {name: Horizon(state.bookmark(name), overlap) for name in SOURCE_TABLES}
