"""The changes a deployment makes, recorded as it goes: the dry-run plan and the summary.

A change is described by the resource and what happens to it, never by a value: secret
values and policy documents stay out of the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    resource: str  # e.g. "s3://bucket", "iam role x", "secret airflow/connections/y"
    action: str  # e.g. "create", "turn on versioning", "upload"

    def __str__(self) -> str:
        return f"{self.resource}: {self.action}"


@dataclass
class Plan:
    """Collects changes; in a dry run nothing is applied, only recorded."""

    dry_run: bool
    say: Callable[[str], None] = print
    changes: list[Change] = field(default_factory=list)

    def change(
        self, resource: str, action: str, call: Callable[..., T], /, **kwargs: Any
    ) -> T | None:
        """Record a change and, unless this is a dry run, make it: `call(**kwargs)`."""
        self._record(resource, action)
        return None if self.dry_run else call(**kwargs)

    def would(self, resource: str, action: str) -> None:
        """A change only a dry run can record: one whose inputs come later (e.g. a prompt)."""
        if not self.dry_run:
            raise ValueError("a real run makes its changes through change()")
        self._record(resource, action)

    def _record(self, resource: str, action: str) -> None:
        change = Change(resource, action)
        self.changes.append(change)
        self.say(f"{'would ' if self.dry_run else ''}{change}")

    def summary(self) -> str:
        if not self.changes:
            return "no changes: everything is already as it should be"
        verb = "would make" if self.dry_run else "made"
        return f"{verb} {len(self.changes)} change(s)" + (
            " (dry run: nothing written)" if self.dry_run else ""
        )
