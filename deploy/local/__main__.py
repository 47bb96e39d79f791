"""python -m deploy.local up|down|status|seed|simulate|airflow

Settings come from flags, else the environment (TOTESYS_LOCAL_DIR, LOCAL_PG_PORT,
LOCAL_S3_PORT, LOCAL_SMTP_PORT, TOTESYS_DB_URL). `seed` and `simulate` act on
TOTESYS_DB_URL when it is set, otherwise on the running local stack. `simulate --follow`
keeps totesys changing in real time (the docker-compose simulator service runs it).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from deploy.local.processes import ServiceStartError, is_alive
from deploy.local.stack import LocalStack, StackEndpoints, StackPorts
from simulator.seed import SeedError, SeedPlan, seed_totesys
from simulator.simulate import SimulationPlan, follow, simulate

DEFAULT_STATE_DIR = Path(".local/stack")


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
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
        help="the stack, a seeded totesys and a warehouse, then `airflow standalone` on localhost:8080",
    )
    return parser


def run_airflow_standalone(stack: LocalStack) -> None:
    """Replace this process with `airflow standalone` wired to the stack (Ctrl-C stops it)."""
    import psycopg

    from deploy.local.airflow import airflow_env, migrate
    from etl.config import Settings
    from etl.load.loader import init_warehouse
    from simulator.schema import has_tables

    endpoints = stack.up()
    with psycopg.connect(endpoints.totesys_db_url) as conn:
        seeded = has_tables(conn)
    if not seeded:
        seed_totesys(endpoints.totesys_db_url, SeedPlan())
    print(init_warehouse(Settings.from_env(endpoints.as_env())))
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    env = airflow_env(endpoints, stack.state_dir.parent / "airflow", {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # local only: no login page
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    })  # fmt: skip
    migrate(env)
    print(
        f"Airflow UI: http://localhost:{port} (DAG totesys_etl); stop with Ctrl-C, then `make down`"
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    os.execve(airflow, [airflow, "standalone"], env)


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
