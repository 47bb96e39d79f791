"""Structured log lines: `event key=value ...`, one per fact worth keeping.

Values are never secrets: settings hold credentials as `Secret`, which prints as ***.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    parts = [event, *(f"{key}={_format(value)}" for key, value in fields.items())]
    logger.log(level, " ".join(parts))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return f'"{text}"' if " " in text else text


def configure_cli_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
