"""Opening database connections with errors a person can act on (and no credentials in them)."""

from __future__ import annotations

from typing import Any

import psycopg

from etl.config import MALFORMED, Secret, describe_url
from etl.errors import SourceUnavailableError, one_line


def connect(url: Secret | None, name: str) -> psycopg.Connection[tuple[Any, ...]]:
    """Connect to `name` ("totesys", "the warehouse"); a refusal names host and database."""
    assert url is not None
    where = describe_url(url)
    if where == MALFORMED:
        # the driver's message would quote the URL, password included
        raise SourceUnavailableError(
            f"the {name} URL is malformed; percent-encode its user and password"
        )
    try:
        return psycopg.connect(url.reveal(), connect_timeout=10, application_name="totesys-etl")
    except psycopg.OperationalError as error:
        raise SourceUnavailableError(
            f"cannot connect to {name} at {where}: {one_line(error)}"
        ) from None
