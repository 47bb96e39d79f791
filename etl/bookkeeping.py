"""The pipeline's bookkeeping in the warehouse database: schema `etl` (the stage leases,
the load ledger, the waiting facts, the rows set aside at load), and who may own it.

Every write the pipeline makes there runs as the loader's login. A schema, table or
function in `etl` that belongs to another login, or a trigger or rule on one of its tables,
would run that login's code with the loader's rights on every lease and ledger write (a
login with CREATE on the database can pre-create the schema before the first load). So
the schema is created by the loader, owned by it, and before each use `check` refuses,
in one line, bookkeeping that is not the current user's or carries a trigger or a rule.
docs/operations.md, "Who may hold what in the warehouse database", says who may hold
CREATE there.

Lock waits here are bounded: `bounded_locks` sets `lock_timeout` on a session, so a
login holding a lock the pipeline needs (an advisory key, a table lock) makes a stage fail
with a transient error after that long instead of hanging.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from etl.errors import ConfigError

Connection = psycopg.Connection[tuple[Any, ...]]

SCHEMA = "etl"

_FOREIGN = """
WITH me AS (SELECT oid FROM pg_roles WHERE rolname = current_user)
SELECT kind, name, owner FROM (
    SELECT 'schema' AS kind, n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner
      FROM pg_namespace n WHERE n.nspname = %(schema)s AND n.nspowner <> (SELECT oid FROM me)
    UNION ALL
    SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' ELSE 'table' END,
           %(schema)s || '.' || c.relname, pg_get_userbyid(c.relowner)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(schema)s AND c.relowner <> (SELECT oid FROM me)
    UNION ALL
    SELECT 'function', %(schema)s || '.' || p.proname, pg_get_userbyid(p.proowner)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = %(schema)s AND p.proowner <> (SELECT oid FROM me)
    UNION ALL
    SELECT 'trigger', %(schema)s || '.' || c.relname || ' ' || t.tgname, pg_get_userbyid(c.relowner)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
    UNION ALL
    SELECT 'rule', %(schema)s || '.' || r.tablename || ' ' || r.rulename, r.schemaname
      FROM pg_rules r WHERE r.schemaname = %(schema)s
) AS foreign_objects ORDER BY 1, 2
"""


def check(conn: Connection) -> None:
    """Refuse bookkeeping that is not wholly the current user's (see the module's
    docstring). Nothing is changed; absent objects are fine (they are created as ours)."""
    rows = conn.execute(_FOREIGN, {"schema": SCHEMA}).fetchall()
    if not rows:
        return
    me = conn.execute("SELECT current_user").fetchone()
    assert me is not None
    shown = ", ".join(
        f"{kind} {name}" + ("" if kind in ("trigger", "rule") else f" owned by {owner}")
        for kind, name, owner in rows[:3]
    )
    more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
    raise ConfigError(
        f"the bookkeeping schema {SCHEMA} in the warehouse database is not the loader's"
        f" ({me[0]}) alone: {shown}{more}; refusing to write there. Drop or re-own it as an"
        " administrator after checking who made it (docs/operations.md, 'Who may hold what"
        " in the warehouse database')"
    )


def ensure_schema(conn: Connection) -> None:
    """The schema, created by (so owned by) the current user where it does not exist,
    then checked: once, before the caller's own `CREATE ... IF NOT EXISTS`, which only
    adds objects of ours (another login cannot add to a schema we own unless we grant it
    CREATE)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    check(conn)


def bounded_locks(conn: Connection, wait: timedelta) -> None:
    """No lock wait on this session longer than `wait` (the stage's lease wait)."""
    millis = max(1, int(wait.total_seconds() * 1000))
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (str(millis),))
