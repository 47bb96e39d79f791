"""Per-table bookmarks as explicit state with pure transitions (Singer-style).

A bookmark holds the highest `last_updated` extracted (`value`) and the row versions
already extracted inside the overlap window behind it (`seen`). The next extract re-reads
from `value - overlap` - so a row that commits late with an earlier `last_updated` is not
lost - and skips the versions in `seen`, so re-reading the window duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from etl.tables import REPLICATION_KEY

Version = tuple[int, datetime]  # (primary key, last_updated)


@dataclass(frozen=True)
class Bookmark:
    value: datetime | None = None
    seen: frozenset[Version] = field(default_factory=frozenset)

    def lower_bound(self, overlap: timedelta) -> datetime | None:
        """Closed lower bound of the next extract; None means a full extract."""
        return None if self.value is None else self.value - overlap

    def advance(
        self,
        extracted_max: datetime | None,
        versions: Iterable[Version],
        overlap: timedelta,
        ceiling: datetime | None = None,
    ) -> Bookmark:
        """After a batch: the highest value seen, but never past `ceiling` (the source's own
        clock), so one row dated in the future cannot make every later change look old;
        window versions pruned to the new window (future-dated ones stay seen)."""
        if extracted_max is None:
            return self
        candidate = extracted_max if ceiling is None else min(extracted_max, ceiling)
        value = candidate if self.value is None else max(self.value, candidate)
        floor = value - overlap
        seen = frozenset(v for v in (*self.seen, *versions) if v[1] >= floor)
        return Bookmark(value, seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "replication_key": REPLICATION_KEY,
            "replication_key_value": None if self.value is None else self.value.isoformat(),
            "seen_in_overlap": sorted([key, ts.isoformat()] for key, ts in self.seen),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Bookmark:
        value = document.get("replication_key_value")
        seen = frozenset(
            (int(key), datetime.fromisoformat(ts))
            for key, ts in document.get("seen_in_overlap", [])
        )
        return cls(None if value is None else datetime.fromisoformat(value), seen)


@dataclass(frozen=True)
class IngestState:
    """Bookmarks for every table after `batch_id` (None before the first batch)."""

    batch_id: str | None = None
    bookmarks: Mapping[str, Bookmark] = field(default_factory=dict)

    def bookmark(self, table: str) -> Bookmark:
        return self.bookmarks.get(table, Bookmark())

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "bookmarks": {table: mark.to_json() for table, mark in sorted(self.bookmarks.items())},
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> IngestState:
        if not document:
            return cls()
        marks = {
            table: Bookmark.from_json(mark) for table, mark in document.get("bookmarks", {}).items()
        }
        return cls(document.get("batch_id"), marks)
