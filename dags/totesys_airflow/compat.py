"""Airflow names that moved between the versions the DAG runs on: 3.0.6 (local, MWAA) and
3.3.1 (MWAA's newest), where `airflow.exceptions.AirflowFailException` is a deprecated
alias of the Task SDK's (importing it warns, and the tests treat warnings as errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import airflow.exceptions
import airflow.sdk.exceptions


def _fail_exception() -> type[Exception]:
    moved: type[Exception] | None = getattr(airflow.sdk.exceptions, "AirflowFailException", None)
    return moved if moved is not None else airflow.exceptions.AirflowFailException


if TYPE_CHECKING:
    from airflow.exceptions import AirflowFailException
else:
    AirflowFailException = _fail_exception()

__all__ = ["AirflowFailException"]
