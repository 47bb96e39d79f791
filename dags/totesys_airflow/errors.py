"""Terminal errors fail the task at once; transient ones are retried with backoff.

etl classifies every error it raises (etl.errors: `transient`). A terminal one (bad
configuration or input: a name outside the allow-list, schema drift, a checksum mismatch,
a value the warehouse refuses, refused credentials) cannot be cured by running again, so
the task fails on its first try with `AirflowFailException`: one email, now, instead of
three retries with backoff before anyone hears of it. A transient one (a database or S3
outage, another process holding the stage's lease) is re-raised as it is and Airflow
retries it with the DAG's backoff. An exception etl did not classify (a bug) keeps
Airflow's default: retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from etl.errors import EtlError, is_transient_database_error
from totesys_airflow.alerts import error_kept_for_the_email
from totesys_airflow.compat import AirflowFailException


class TerminalError(AirflowFailException):
    """A bad input or configuration: the task fails without retries. The message starts
    with the etl error's own class name, as the failure email shows it."""


def is_terminal(error: BaseException) -> bool:
    if isinstance(error, EtlError):
        return not error.transient
    if isinstance(error, psycopg.Error):
        return not is_transient_database_error(error)
    return False


@contextmanager
def failing_fast_on_bad_input() -> Iterator[None]:
    """`error_kept_for_the_email`, plus: a terminal etl error fails the task without
    retries (TerminalError); anything else propagates unchanged, to be retried."""
    try:
        with error_kept_for_the_email():
            yield
    except Exception as error:
        if is_terminal(error):
            raise TerminalError(f"{type(error).__name__}: {error}") from error
        raise
