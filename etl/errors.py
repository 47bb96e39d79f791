"""Errors the pipeline reports as one clear line (CLI) or a failed task with an email (DAG).

Every error is either terminal or transient. Terminal: the input or the configuration is
wrong, and running again cannot help (a missing setting, a name outside the allow-list,
schema drift, a checksum mismatch, a value the warehouse refuses); it must reach a person
at once. Transient: a service is down or busy (connection refused or reset, S3 5xx or a
timeout, another process holding the stage's lease, a serialization failure); running
again later is the cure. `transient` says which; the CLI turns it into its exit code and the
DAG into "fail now" or "retry with backoff".
"""

from __future__ import annotations

import psycopg

# exit codes of `python -m etl` (sysexits.h names)
EXIT_OK = 0
EXIT_TERMINAL = 1  # bad input or configuration: fix it, do not retry
EXIT_TRANSIENT = 69  # EX_UNAVAILABLE: a service is down or failed; retry with backoff
EXIT_LEASE = 75  # EX_TEMPFAIL: another process of the stage holds (or took over) its lease


class EtlError(RuntimeError):
    """Base class: the message is a complete, one-line explanation for a person.

    Terminal unless the class (or the instance, for an error whose cause decides) says
    otherwise."""

    transient: bool = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class TransientError(EtlError):
    """A service is unavailable or busy: the same run, later, is expected to succeed."""

    transient = True


class ConfigError(EtlError):
    """A setting is missing or invalid (including a table name outside the allow-list)."""


class SourceUnavailableError(TransientError):
    """The source database cannot be reached (transient) or refused our credentials
    (terminal: raised with transient=False)."""


class SchemaDriftError(EtlError):
    """Data or a database does not have the columns and types of the contract."""


class StorageError(EtlError):
    """An object store operation failed for a reason that retrying does not cure (bucket
    missing, access denied); `StorageUnavailableError` is the transient kind."""


class StorageUnavailableError(StorageError):
    """The object store did not answer or answered 5xx / throttled / timed out."""

    transient = True


class LeaseError(TransientError):
    """Another process of the same stage is working: nothing was written; try later."""


class LeaseBusyError(LeaseError):
    """The stage's lease stayed held by another process for the whole wait."""


class LeaseLostError(LeaseError):
    """This process no longer holds the stage's lease (it was paused or cut off long
    enough for another process to take over): it stops before its next write."""


class DamagedObjectError(EtlError):
    """An object the pipeline wrote cannot be read back (not JSON, a truncated parquet, a
    document of the wrong shape). Terminal: reading it again gives the same bytes;
    `python -m etl doctor` names the repair (most are rebuilt by `--repair`)."""


class DataError(EtlError):
    """Values break a rule of the warehouse (an unknown currency, a NULL it cannot hold)."""


def one_line(error: BaseException) -> str:
    """A driver error in one line: the server's primary message when there is one (not the
    query excerpt and caret that follow it), else the first line of the text."""
    primary = getattr(getattr(error, "diag", None), "message_primary", None)
    if primary:
        return str(primary)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def is_transient_database_error(error: BaseException) -> bool:
    """Connection lost or refused, server shutting down, a serialization failure or
    deadlock, a cancelled statement: psycopg's OperationalError family (and a connection
    that is already closed). Constraint violations, bad values, missing relations and
    privileges are terminal."""
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def exit_code(error: BaseException) -> int:
    """The CLI's exit code for an error that ended a command."""
    if isinstance(error, LeaseError):
        return EXIT_LEASE
    if isinstance(error, EtlError):
        return EXIT_TRANSIENT if error.transient else EXIT_TERMINAL
    if isinstance(error, psycopg.Error):
        return EXIT_TRANSIENT if is_transient_database_error(error) else EXIT_TERMINAL
    return EXIT_TERMINAL
