"""Fault injection through the pipeline's public step hooks (no patching of our code)."""

from __future__ import annotations

from collections.abc import Callable


class InjectedCrash(Exception):
    """Stands in for a process dying at a chosen step."""


def crash_at(step_name: str) -> Callable[[str], None]:
    def hook(step: str) -> None:
        if step == step_name:
            raise InjectedCrash(step)

    return hook
