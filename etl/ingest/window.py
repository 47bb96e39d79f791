"""Window batches: re-reading an interval of the source, for a backfill or the nightly sweep.

The incremental path reads each table from its bookmark minus the overlap. A row that commits
later than that (a long transaction, a restored backup, a clock step) is behind every later
bookmark and is never read again. A window batch reads every row whose `last_updated` is in
`[since, until)`, as a batch of its own, and leaves the bookmarks as they are. The source holds
only current rows, so a window can never move a dimension backwards; transform drops the fact
versions it has already emitted and load inserts only missing versions, so a window applies
exactly the versions the warehouse lacks, and running it again changes nothing.

Window maths (pure) live here; `etl.ingest.run` runs the batch and `etl.ops.sweep` counts what
a sweep found.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from etl.errors import ConfigError
from etl.manifests.ingestion import IngestionManifest

WindowKind = Literal["backfill", "sweep"]
KINDS: tuple[WindowKind, ...] = ("backfill", "sweep")


@dataclass(frozen=True)
class Window:
    """`[since, until)` on the source's clock (naive, like `last_updated` itself)."""

    since: datetime
    until: datetime
    kind: WindowKind = "backfill"

    def __post_init__(self) -> None:
        if self.since.tzinfo is not None or self.until.tzinfo is not None:
            raise ValueError("a window is on the source's naive clock; convert it first")
        if self.since >= self.until:
            raise ConfigError(
                f"the window's start {self.since.isoformat()} is not before its end"
                f" {self.until.isoformat()}"
            )
        if self.kind not in KINDS:
            raise ConfigError(f"unknown window kind {self.kind!r} (one of {', '.join(KINDS)})")

    def to_json(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "kind": self.kind}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Window:
        return cls(
            datetime.fromisoformat(document["since"]),
            datetime.fromisoformat(document["until"]),
            document.get("kind", "backfill"),
        )


def on_source_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    """An instant as the source writes it: naive, in its own zone. A naive input is taken
    to be on the source's clock already (how `last_updated` reads in totesys)."""
    if instant.tzinfo is None:
        return instant
    return instant.astimezone(zone).replace(tzinfo=None)


def window_between(
    since: datetime, until: datetime, zone: ZoneInfo, kind: WindowKind = "backfill"
) -> Window:
    """The window `[since, until)`, each end converted to the source's clock."""
    return Window(on_source_clock(since, zone), on_source_clock(until, zone), kind)


def interval_window(start: datetime, end: datetime, overlap: timedelta, zone: ZoneInfo) -> Window:
    """What a backfill (or cleared) run of the data interval `[start, end)` re-reads: the
    interval plus the overlap before it, the same margin an incremental batch re-reads, so a
    row committed a little late into the previous interval is covered too."""
    return window_between(start - overlap, end, zone, "backfill")


def sweep_window(end: datetime, hours: float, zone: ZoneInfo) -> Window:
    """What the nightly sweep re-reads: the `hours` before the end of its run's interval."""
    if hours <= 0:
        raise ConfigError(f"sweep_hours must be positive, not {hours}")
    return window_between(end - timedelta(hours=hours), end, zone, "sweep")


def window_of(manifest: IngestionManifest | None) -> Window | None:
    """The window a batch re-read (None: an incremental batch, or no manifest)."""
    document = None if manifest is None else manifest.get("window")
    return None if document is None else Window.from_json(document)


# --- the CLI: python -m etl ingest --since ISO --until ISO --------------------------------


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=_instant,
        help="re-read every row with last_updated >= this (ISO; no offset: the source's clock)",
    )
    parser.add_argument(
        "--until", type=_instant, help="... and < this; a window batch never moves a watermark"
    )


def window_from_arguments(args: argparse.Namespace, zone: ZoneInfo) -> Window | None:
    """The window `--since`/`--until` ask for (both or neither), on the source's clock."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is None and until is None:
        return None
    if since is None or until is None:
        raise ConfigError("--since and --until go together: give both ends of the window")
    return window_between(since, until, zone)
