"""Errors the pipeline reports as one clear line (CLI) or a failed task with an email (DAG)."""

from __future__ import annotations


class EtlError(RuntimeError):
    """Base class: the message is a complete, one-line explanation for a person."""


class ConfigError(EtlError):
    """A setting is missing or invalid (including a table name outside the allow-list)."""


class SourceUnavailableError(EtlError):
    """The source database cannot be reached or refused our credentials."""


class SchemaDriftError(EtlError):
    """Data or a database does not have the columns and types of the contract."""


class StorageError(EtlError):
    """An object store operation failed (bucket missing, endpoint down, access denied)."""


def one_line(error: BaseException) -> str:
    """A driver error in one line: the server's primary message when there is one (not the
    query excerpt and caret that follow it), else the first line of the text."""
    primary = getattr(getattr(error, "diag", None), "message_primary", None)
    if primary:
        return str(primary)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class DataError(EtlError):
    """Values break a rule of the warehouse (an unknown currency, a NULL it cannot hold)."""
