"""Every error is terminal or transient, and the CLI's exit code says which: errors raised
by the real PostgreSQL, classified as etl classifies them."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from etl.errors import (
    EXIT_LEASE,
    EXIT_TERMINAL,
    EXIT_TRANSIENT,
    ConfigError,
    DataError,
    EtlError,
    LeaseBusyError,
    LeaseLostError,
    SchemaDriftError,
    SourceUnavailableError,
    StorageError,
    StorageUnavailableError,
    exit_code,
    is_transient_database_error,
)


def test_a_serialization_failure_is_transient_and_a_constraint_violation_terminal(
    make_database: Callable[[str], str],
) -> None:
    url = make_database("errors")
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL)")
        setup.execute("INSERT INTO t VALUES (1, 0)")
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        for conn in (first, second):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.execute("SELECT n FROM t").fetchall()  # both snapshots taken
        first.execute("UPDATE t SET n = 1 WHERE id = 1")
        first.commit()
        with pytest.raises(psycopg.Error) as serialization:
            second.execute("UPDATE t SET n = 2 WHERE id = 1")
        second.rollback()
        with pytest.raises(psycopg.Error) as violation:
            second.execute("INSERT INTO t VALUES (1, NULL)")

    assert isinstance(serialization.value, psycopg.errors.SerializationFailure)
    assert is_transient_database_error(serialization.value)
    assert exit_code(serialization.value) == EXIT_TRANSIENT
    assert not is_transient_database_error(violation.value)
    assert exit_code(violation.value) == EXIT_TERMINAL


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("unknown table(s) 'x'"), EXIT_TERMINAL),
        (SchemaDriftError("payment: missing column(s) paid"), EXIT_TERMINAL),
        (DataError("unknown currency"), EXIT_TERMINAL),
        (EtlError("s3://b/k does not match the sha256 in its manifest"), EXIT_TERMINAL),
        (StorageError("cannot read s3://b/k: NoSuchBucket"), EXIT_TERMINAL),
        (SourceUnavailableError("cannot connect to totesys: refused"), EXIT_TRANSIENT),
        (SourceUnavailableError("password authentication failed", transient=False), EXIT_TERMINAL),
        (StorageUnavailableError("cannot read s3://b/k: InternalError"), EXIT_TRANSIENT),
        (LeaseBusyError("the ingest lease is held by ..."), EXIT_LEASE),
        (LeaseLostError("the ingest lease (generation 3) was lost"), EXIT_LEASE),
    ],
)
def test_the_exit_code_follows_the_kind_of_error(error: EtlError, code: int) -> None:
    assert exit_code(error) == code
    assert error.transient == (code != EXIT_TERMINAL)
