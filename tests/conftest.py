"""Session fixtures: one real local stack (PostgreSQL, moto S3, SMTP sink) for the run."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devstack.postgres import database_url
from devstack.stack import StackEndpoints, local_stack

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


# The modules that start `airflow standalone`: under xdist they share one worker, so two
# standalones (four Airflow components each, plus tasks) never compete for 2 CPUs with the
# one-minute schedules and task timeouts these tests wait on; the other worker runs the
# rest beside them. Each standalone has its own metadata database in its own stack's
# PostgreSQL (devstack.airflow.metadata_database), so none shares metadata.
STANDALONE_MODULES = frozenset({
    "tests/dags/test_real_scheduler.py",
    "tests/dags/test_concurrent_runs.py",
    "tests/dags/test_backfill_scheduler.py",
    "tests/dags/test_failure_alerts.py",
    "tests/dags/test_make_airflow.py",
})  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for `--dist loadgroup` (make pytest): a whole file per group, so module
    fixtures are set up once, and every standalone module in one group."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = item.nodeid.split("::")[0]
        group = "airflow-standalone" if path in STANDALONE_MODULES else path
        item.add_marker(pytest.mark.xdist_group(group))
