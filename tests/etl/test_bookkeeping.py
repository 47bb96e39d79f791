"""Other warehouse logins cannot reach the pipeline's bookkeeping, against the real server
with ordinary roles: a loader that owns the warehouse database, an analyst with CREATE on
it, and a login with only CONNECT. Each attempt fails in one line, never a traceback, and
never hangs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devstack.postgres import HOST
from devstack.stack import StackEndpoints
from etl.config import Secret, Settings
from etl.lease import STAGE_KEYS
from tests.etl.test_main import env_for, run_etl

NUMBER = itertools.count()


@dataclass(frozen=True)
class Logins:
    loader: str  # URLs of the warehouse database as each login
    analyst: str
    connect_only: str


def _url(stack: StackEndpoints, role: str, database: str) -> str:
    return f"postgresql://{role}:pw-{role}@{HOST}:{stack.pg_port}/{database}"


@pytest.fixture
def logins(stack: StackEndpoints, settings: Settings) -> Iterator[Logins]:
    """Three ordinary roles on the test's own warehouse database, which the loader owns."""
    database = settings.warehouse_db_url.reveal().rsplit("/", 1)[1]  # type: ignore[union-attr]
    suffix = f"{next(NUMBER)}_{int(time.time() * 1000) % 100000}"
    # the loader's name in mixed case, as PostgreSQL keeps a quoted name
    roles = {name: f"{name}_{suffix}" for name in ("loader", "analyst", "connect")}
    roles["loader"] = f"Loader_{suffix}"
    with psycopg.connect(settings.warehouse_db_url.reveal(), autocommit=True) as admin:  # type: ignore[union-attr]
        for role in roles.values():
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(f"pw-{role}")
                )
            )
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(database), sql.Identifier(roles["loader"])
            )
        )
        admin.execute(
            sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(roles["loader"]))
        )
        admin.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(roles["analyst"])
            )
        )
        admin.execute(
            sql.SQL(
                "REVOKE ALL ON DATABASE {} FROM PUBLIC; GRANT CONNECT ON DATABASE {} TO {}"
            ).format(
                sql.Identifier(database), sql.Identifier(database), sql.Identifier(roles["connect"])
            )
        )
        admin.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(roles["loader"])
            )
        )
    yield Logins(*(_url(stack, roles[n], database) for n in ("loader", "analyst", "connect")))


def as_loader(settings: Settings, logins: Logins) -> Settings:
    return replace(settings, warehouse_db_url=Secret(logins.loader))


def test_a_schema_an_analyst_made_first_is_refused_in_one_line(
    stack: StackEndpoints, settings: Settings, logins: Logins
) -> None:
    env = {**env_for(stack, settings), "WAREHOUSE_DB_URL": logins.loader}
    with psycopg.connect(logins.analyst, autocommit=True) as analyst:  # before the first load
        me = analyst.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        grab = sql.SQL(
            "CREATE FUNCTION etl.grab() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " EXECUTE 'GRANT ALL ON ALL TABLES IN SCHEMA public TO ' || {}; RETURN NEW; END $$"
        ).format(sql.Literal(me))
        analyst.execute(
            """CREATE SCHEMA etl;
               CREATE TABLE etl.stage_lease (stage text PRIMARY KEY, generation bigint NOT NULL,
                                             holder text NOT NULL, since timestamptz NOT NULL);
               GRANT USAGE ON SCHEMA etl TO PUBLIC; GRANT ALL ON etl.stage_lease TO PUBLIC;"""
        )
        analyst.execute(grab)
        analyst.execute(
            """CREATE TRIGGER grab BEFORE INSERT OR UPDATE ON etl.stage_lease
                 FOR EACH ROW EXECUTE FUNCTION etl.grab()"""
        )

    for command in (
        ("init-warehouse",),
        ("load",),
        ("run",),
        ("status",),
        ("doctor",),
        ("replay", "--all"),
    ):
        result = run_etl(env, *command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (command, result.stderr)
        assert (
            "the bookkeeping schema etl in the warehouse database is not the loader's" in errors[0]
        )
        assert f"schema etl owned by {me}" in errors[0]
    with psycopg.connect(logins.analyst) as analyst:  # the trigger never ran as the loader
        granted = analyst.execute(
            "SELECT count(*) FROM information_schema.role_table_grants"
            " WHERE grantee = current_user AND table_schema = 'public'"
        ).fetchone()
    assert granted == (0,)


def test_a_trigger_on_the_loaders_own_bookkeeping_is_refused(
    settings: Settings, s3: Any, logins: Logins
) -> None:
    from etl.errors import ConfigError
    from etl.lease import LeaseTerms, hold

    loader = as_loader(settings, logins)
    with hold(LeaseTerms.of(loader), "load"):
        pass  # creates the schema and the lease table as the loader
    with psycopg.connect(logins.loader, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RETURN NEW; END $$;
               CREATE TRIGGER audit BEFORE UPDATE ON etl.stage_lease
                 FOR EACH ROW EXECUTE FUNCTION public.noop();"""
        )
    with (
        pytest.raises(ConfigError, match=r"trigger etl\.stage_lease audit"),
        hold(LeaseTerms.of(loader), "load"),
    ):
        pass


def test_a_connect_only_login_holding_a_lease_key_is_named_and_waited_for_boundedly(
    stack: StackEndpoints, settings: Settings, logins: Logins
) -> None:
    env = {**env_for(stack, settings), "WAREHOUSE_DB_URL": logins.loader, "LEASE_WAIT_SECONDS": "2"}
    assert run_etl(env, "init-warehouse").returncode == 0
    with psycopg.connect(logins.connect_only, autocommit=True) as squatter:
        squatter.execute("SELECT pg_advisory_lock(%s)", (STAGE_KEYS["load"],))
        started = time.monotonic()
        result = run_etl(env, "load")
        waited = time.monotonic() - started

    assert result.returncode == 75, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "the load lease is held by server pid" in line
    assert "(login connect_" in line  # the server hides its application from the loader
    assert "which is not a pipeline process" in line
    assert waited < 60, "bounded by LEASE_WAIT_SECONDS, not forever"
    assert run_etl(env, "load").returncode == 0  # the key released: load goes on
