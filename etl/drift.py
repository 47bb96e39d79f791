"""How a file's columns differ from the contract, in one wording for every stage."""

from __future__ import annotations

from collections.abc import Sequence


def column_drift(expected: Sequence[str], found: Sequence[str]) -> str | None:
    """None when the columns are exactly the expected ones in order; else what differs."""
    if list(found) == list(expected):
        return None
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    parts = [
        f"missing column(s) {', '.join(missing)}" if missing else "",
        f"unexpected column(s) {', '.join(extra)}" if extra else "",
        "columns out of order" if not missing and not extra else "",
    ]
    return "; ".join(part for part in parts if part)
