"""Session fixtures: one real local stack (PostgreSQL, moto S3, SMTP sink) for the run."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from deploy.local.postgres import database_url
from deploy.local.stack import StackEndpoints, local_stack

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEndpoints]:
    with local_stack(tmp_path_factory.mktemp("stack")) as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def make_database(stack: StackEndpoints) -> Callable[[str], str]:
    """Create an empty database with a unique name; return its URL."""
    counter = itertools.count()

    def create(prefix: str) -> str:
        name = f"{prefix}_{next(counter)}"
        with psycopg.connect(
            database_url(stack.pg_password, stack.pg_port, "postgres"), autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return database_url(stack.pg_password, stack.pg_port, name)

    return create
