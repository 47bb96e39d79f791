"""Opening database connections with errors a person can act on (and no credentials in them)."""

from __future__ import annotations

from typing import Any

import psycopg

from etl.config import MALFORMED, Secret, describe_url
from etl.errors import SourceUnavailableError, one_line

APPLICATION_NAME = "totesys-etl"

# a refusal that retrying cannot cure: the configuration (URL, user, password, grants) is wrong
_REFUSED_FOR_GOOD = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "is not permitted to log in",
)


def connect(url: Secret | None, name: str, **options: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """Connect to `name` ("totesys", "the warehouse"); a refusal names host and database.
    `options` are extra libpq parameters (keepalives for the lease connection). An
    unreachable server is transient; refused credentials or an unknown database terminal."""
    assert url is not None
    where = describe_url(url)
    if where == MALFORMED:
        # the driver's message would quote the URL, password included
        raise SourceUnavailableError(
            f"the {name} URL is malformed; percent-encode its user and password", transient=False
        )
    try:
        return psycopg.connect(
            url.reveal(), connect_timeout=10, application_name=APPLICATION_NAME, **options
        )
    except psycopg.OperationalError as error:
        reason = one_line(error)
        raise SourceUnavailableError(
            f"cannot connect to {name} at {where}: {reason}",
            transient=not any(mark in reason for mark in _REFUSED_FOR_GOOD),
        ) from None
