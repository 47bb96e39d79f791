"""python -m devstack up|down|status|seed|simulate|airflow

Settings come from flags, else the environment (TOTESYS_LOCAL_DIR, LOCAL_PG_PORT,
LOCAL_S3_PORT, LOCAL_SMTP_PORT, TOTESYS_DB_URL). `seed` and `simulate` act on
TOTESYS_DB_URL when it is set, otherwise on the running local stack. `simulate --follow`
keeps totesys changing in real time (the docker-compose simulator service runs it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.processes import ServiceStartError, is_alive
from devstack.stack import LocalStack, StackEndpoints, StackPorts
from simulator.seed import SeedError, SeedPlan, seed_totesys
from simulator.simulate import SimulationPlan, follow, simulate

if TYPE_CHECKING:
    from devstack.airflow import Standalone

DEFAULT_STATE_DIR = Path(".local/stack")


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(env.get("TOTESYS_LOCAL_DIR", DEFAULT_STATE_DIR)),
        help="where data, logs, kept emails and pids live (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start PostgreSQL, moto S3 and the SMTP sink")
    up.add_argument("--pg-port", type=int, default=int(env.get("LOCAL_PG_PORT", 0)))
    up.add_argument("--s3-port", type=int, default=int(env.get("LOCAL_S3_PORT", 0)))
    up.add_argument("--smtp-port", type=int, default=int(env.get("LOCAL_SMTP_PORT", 0)))
    commands.add_parser("down", help="stop every service of the stack")
    commands.add_parser("status", help="show which services run and how to reach them")
    seed = commands.add_parser("seed", help="create the totesys schema and its history")
    seed.add_argument("--scale", type=float, default=1.0, help="1 = the real database in Nov 2024")
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed, same rows)")
    seed.add_argument("--as-of", type=date.fromisoformat, default=SeedPlan().as_of)
    seed.add_argument("--replace", action="store_true", help="drop existing totesys tables first")
    sim = commands.add_parser("simulate", help="advance the totesys clock")
    sim.add_argument("--days", type=float, default=1.0)
    sim.add_argument(
        "--follow",
        action="store_true",
        help="keep going in real time: every --interval seconds, simulate up to now (UTC)",
    )
    sim.add_argument("--interval", type=float, default=60.0, help="seconds between --follow rounds")
    sim.add_argument(
        "--rounds", type=int, help="stop --follow after this many rounds (default: never)"
    )
    sim.add_argument("--rate", type=float, default=1.0, help="multiplies orders per weekday")
    sim.add_argument("--edits-per-weekday", type=float, default=SimulationPlan().edits_per_weekday)
    sim.add_argument("--seed", type=int, default=42)
    commands.add_parser(
        "airflow",
        help="the stack, totesys changing in real time, a warehouse, and `airflow standalone` on"
        " localhost:8080 (until Ctrl-C)",
    )
    return parser


# `make airflow`'s DAG settings unless the environment sets them: every run loads, so a
# change made by the simulator reaches the warehouse within one schedule interval.
AIRFLOW_LOCAL_DEFAULTS = {
    "AIRFLOW__TOTESYS__INGEST_SCHEDULE": "*/5 * * * *",
    "AIRFLOW__TOTESYS__LOAD_EVERY_MINUTES": "5",
}
# The simulator as docker-compose runs it: real-time changes, ten times the real business.
FOLLOW_ARGS = ("--interval", "60", "--rate", "10", "--edits-per-weekday", "10")


def run_airflow_standalone(stack: LocalStack) -> None:
    """The stack, totesys seeded up to today and changing in real time, a warehouse, and
    `airflow standalone` on localhost; runs until Ctrl-C, then stops Airflow and the
    simulator (the stack keeps running: `make down`)."""
    import psycopg

    from devstack.airflow import Standalone, airflow_env, migrate, standalone_settings
    from devstack.processes import spawn, terminate
    from etl.config import Settings
    from etl.load.loader import init_warehouse
    from simulator.schema import has_tables

    endpoints = stack.up()
    with psycopg.connect(endpoints.totesys_db_url) as conn:
        seeded = has_tables(conn)
    if not seeded:  # history up to today, so the real-time simulator continues from now
        seed_totesys(endpoints.totesys_db_url, SeedPlan(as_of=datetime.now(UTC).date()))
    print(init_warehouse(Settings.from_env(endpoints.as_env())))
    port = int(os.environ.get("AIRFLOW__API__PORT", "8080"))
    home = stack.state_dir.parent / "airflow"
    defaults = {k: v for k, v in AIRFLOW_LOCAL_DEFAULTS.items() if not os.environ.get(k)}
    env = airflow_env(endpoints, home, {**defaults, **standalone_settings(port)})
    migrate(env)
    logs = stack.state_dir / "logs"
    simulator = airflow = None
    # Ctrl-C (or a SIGTERM) stops what this command started; even when started with
    # SIGINT ignored, as shells do for background jobs
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        simulator = spawn(
            [sys.executable, "-m", "devstack", "--state-dir", str(stack.state_dir),
             "simulate", "--follow", *FOLLOW_ARGS],
            logs / "simulator.log",
        )  # fmt: skip
        print(
            f"totesys changes in real time (weekdays 08:00-19:00 UTC); log: {logs / 'simulator.log'}"
        )
        print(f"starting Airflow (log: {home / 'standalone.log'}) ...", flush=True)
        airflow = Standalone.start(env, home / "standalone.log")
        print(f"Airflow UI: http://localhost:{port} (DAG totesys_etl); alert emails land in "
              f"{endpoints.maildir / 'new'}; stop with Ctrl-C, then `make down`", flush=True)  # fmt: skip
        report_runs(airflow)
    except KeyboardInterrupt:
        pass
    except (TimeoutError, RuntimeError) as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        print("stopping Airflow and the simulator ...", flush=True)
        if airflow is not None:
            airflow.stop()
        terminate(simulator)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def report_runs(airflow: Standalone, every: float = 15.0) -> None:
    """Print each DAG run as it finishes, until Airflow exits."""
    seen: set[str] | None = None  # runs that ended before this start are not news
    while airflow.process.poll() is None:
        try:
            runs = airflow.api("GET", "/dags/totesys_etl/dagRuns",
                               params={"limit": 20, "order_by": "-run_after"})["dag_runs"]  # fmt: skip
        except Exception:  # the api-server restarting a worker: try again next round
            runs = []
        ended = [r for r in reversed(runs) if r["state"] in ("success", "failed")]
        if seen is None:
            seen = {r["dag_run_id"] for r in ended}
        for run in ended:
            if run["dag_run_id"] not in seen:
                seen.add(run["dag_run_id"])
                print(f"{run['end_date']}  {run['dag_run_id']}: {run['state']}", flush=True)
        time.sleep(every)
    raise SystemExit(f"airflow standalone exited with status {airflow.process.returncode}")


def print_endpoints(endpoints: StackEndpoints) -> None:
    for name, value in endpoints.as_env().items():
        print(f"export {name}={value}")
    print(f"# emails kept in {endpoints.maildir}/new")


def _source_url(stack: LocalStack) -> str:
    url = os.environ.get("TOTESYS_DB_URL")
    if url:
        return url
    endpoints = stack.running()
    if endpoints is None:
        raise SystemExit("error: no TOTESYS_DB_URL and no local stack running; run `up` first")
    return endpoints.totesys_db_url


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stack = LocalStack(
        args.state_dir,
        StackPorts(*(getattr(args, k, 0) for k in ("pg_port", "s3_port", "smtp_port"))),
    )
    try:
        if args.command == "up":
            print_endpoints(stack.up())
        elif args.command == "down":
            stack.down()
            print("local stack stopped")
        elif args.command == "status":
            endpoints = stack.running()
            if endpoints is None:
                print(f"local stack in {stack.state_dir} is not running")
                return 1
            for name, pid in endpoints.pids().items():
                print(f"{name}: {'running' if is_alive(pid) else 'stopped'} (pid {pid})")
            print_endpoints(endpoints)
        elif args.command == "seed":
            plan = SeedPlan(scale=args.scale, seed=args.seed, as_of=args.as_of)
            counts = seed_totesys(_source_url(stack), plan, replace=args.replace)
            print(" ".join(f"{table}={count}" for table, count in counts.items()))
        elif args.command == "simulate":
            plan_sim = SimulationPlan(args.days, args.rate, args.edits_per_weekday, args.seed)
            if args.follow:
                rounds = follow(_source_url(stack), plan_sim, args.interval, args.rounds)
                try:
                    for report in rounds:
                        if report.events.total():  # quiet rounds (nights, weekends): nothing
                            print(report.summary(), flush=True)
                except KeyboardInterrupt:  # Ctrl-C ends following; every event is committed
                    pass
            else:
                print(simulate(_source_url(stack), plan_sim).summary())
        elif args.command == "airflow":
            run_airflow_standalone(stack)
    except (SeedError, ServiceStartError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
