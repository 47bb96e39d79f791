"""python -m deploy mwaa [apply|status|trigger|backfill|unpause] --env-name NAME [options]

apply (the default) checks every input first, then provisions buckets, the execution role
and connection secrets, ships the DAG (files git tracks), plugins.zip and requirements.txt,
creates or updates the MWAA environment, waits until it is AVAILABLE and checks pip's
install log. `--dry-run` prints the plan and writes nothing. Options fall back to
environment variables (MWAA_ENV_NAME, DEPLOY_PREFIX, AWS_DEFAULT_REGION, MWAA_SUBNET_IDS,
MWAA_SECURITY_GROUP_IDS, MWAA_SECRETS_PREFIX); connection values come from TOTESYS_DB_URL,
WAREHOUSE_DB_URL, SES_SMTP_USERNAME and SES_SMTP_PASSWORD or a hidden prompt.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic.fields import FieldInfo

from deploy.mwaa import airflow_api, requirements_log
from deploy.mwaa.apply import apply
from deploy.mwaa.aws import (
    AwsClients,
    error_code,
    keep_request_bodies_out_of_logs,
)
from deploy.mwaa.config import (
    DAG_ID,
    DeployConfig,
    DeployError,
)
from deploy.mwaa.environment import (
    EnvironmentWaiter,
    check_owner,
    current_environment,
)
from deploy.mwaa.plan import Plan
from deploy.mwaa.secrets import Prompt
from etl.config import declarations, extra

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy mwaa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "command",
        nargs="?",
        default="apply",
        choices=["apply", "status", "trigger", "backfill", "unpause"],
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    for name, info in declarations(DeployConfig).items():
        if extra(info, "flag"):
            _add_declared_flag(parser, env, name, info)
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    _add_run_arguments(parser)
    return parser


# flags whose values are limited to a few words: argparse lists and checks them
CHOICES = {"webserver_access_mode": ["PRIVATE_ONLY", "PUBLIC_ONLY"]}


def _add_declared_flag(
    parser: argparse.ArgumentParser, env: Mapping[str, str], name: str, info: FieldInfo
) -> None:
    """One deployment setting's flag, as DeployConfig declares it: its name, meaning,
    default and the environment variable it falls back to (no second list of defaults)."""
    flag, variable = str(extra(info, "flag")), extra(info, "env")
    help_text = str(info.description or "")
    if name == "extra_options":
        parser.add_argument(flag, dest="option", action="append", default=[],
                            metavar="SECTION.KEY=VALUE", help=help_text)  # fmt: skip
        return
    default = "" if info.is_required() else info.get_default(call_default_factory=True)
    if isinstance(default, bool):
        parser.add_argument(flag, action="store_true", help=help_text)
        return
    kind: Any = _csv if isinstance(default, tuple) else type(default)
    if variable and variable in env:  # set, even to nothing: taken as it is, as typed
        default = kind(env[variable])
    parser.add_argument(flag, type=kind, default=default, choices=CHOICES.get(name),
                        help=help_text)  # fmt: skip


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What `trigger` and `backfill` ask the DAG to do."""
    trigger = parser.add_argument_group("trigger")
    trigger.add_argument("--full-refresh", action="store_true")
    trigger.add_argument("--force-load", action="store_true")
    trigger.add_argument("--tables", type=_csv, default=())
    backfill = parser.add_argument_group("backfill (each run re-reads its interval; --tables too)")
    backfill.add_argument(
        "--from",
        dest="from_date",
        type=_instant,
        help="first interval end to backfill (ISO 8601; no offset: UTC)",
    )
    backfill.add_argument(
        "--to", dest="to_date", type=_instant, help="last interval end (ISO 8601)"
    )
    backfill.add_argument(
        "--max-active-runs",
        type=int,
        default=3,
        help="backfill runs at once (ingest and transform still run one at a time)",
    )
    backfill.add_argument(
        "--reprocess-behavior",
        default="completed",
        choices=["none", "failed", "completed"],
        help="intervals that already have a run: skip (none) or re-run them",
    )


def _instant(text: str) -> datetime:
    """An ISO 8601 instant; one without an offset is UTC (Airflow's own clock)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _backfill_range(args: argparse.Namespace) -> tuple[datetime, datetime]:
    if args.from_date is None or args.to_date is None:
        raise DeployError("backfill needs --from and --to")
    if args.from_date > args.to_date:
        raise DeployError(
            f"--from {args.from_date.isoformat()} is after --to {args.to_date.isoformat()}"
        )
    if args.max_active_runs < 1:
        raise DeployError(f"--max-active-runs must be at least 1, not {args.max_active_runs}")
    return args.from_date, args.to_date


def config_from_args(args: argparse.Namespace) -> DeployConfig:
    if not args.env_name:
        raise DeployError("set --env-name or MWAA_ENV_NAME")
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise DeployError(f"--option {item!r} must look like section.key=value")
        options[key.strip()] = value
    flagged = {
        name: getattr(args, str(extra(info, "flag")).removeprefix("--").replace("-", "_"))
        for name, info in declarations(DeployConfig).items()
        if extra(info, "flag") and name != "extra_options"
    }
    config = DeployConfig(**flagged, project_root=args.project_root, extra_options=options)
    config.validate()
    return config


def _ours(config: DeployConfig, clients: AwsClients) -> None:
    """Before unpause, trigger or backfill: the environment exists and is this project's."""
    environment = current_environment(clients.mwaa, config.mwaa_name)
    if environment is None:
        raise DeployError(f"mwaa environment {config.mwaa_name} does not exist")
    check_owner(environment, config)


def show_status(config: DeployConfig, clients: AwsClients, say: Callable[[str], None]) -> int:
    environment = current_environment(clients.mwaa, config.mwaa_name)
    if environment is None:
        say(f"mwaa environment {config.mwaa_name} does not exist")
        return 1
    check_owner(environment, config)
    last = environment.get("LastUpdate", {})
    say(
        f"{config.mwaa_name}: {environment.get('Status')} (Airflow {environment.get('AirflowVersion')})"
    )
    say(f"  UI: https://{environment.get('WebserverUrl', '?')}")
    say(
        f"  last update: {last.get('Status', '-')} {last.get('Error', {}).get('ErrorMessage', '')}".rstrip()
    )
    # AVAILABLE says nothing about requirements.txt: MWAA carries on when pip fails
    pip_failed, requirements_line = requirements_log.describe(clients.logs, environment)
    say(f"  {requirements_line}")
    if environment.get("Status") == "AVAILABLE":
        for run in airflow_api.recent_runs(clients.mwaa, config.mwaa_name):
            say(f"  run {run.get('dag_run_id')}: {run.get('state')} (after {run.get('run_after')})")
    return 1 if pip_failed else 0


def main(
    argv: list[str] | None = None,
    *,
    clients: AwsClients | None = None,
    env: Mapping[str, str] | None = None,
    prompt: Prompt | None = None,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] | None = None,
) -> int:
    env = os.environ if env is None else env
    keep_request_bodies_out_of_logs()
    try:
        args = _parser(env).parse_args(argv)
        config = config_from_args(args)
        clients = clients or AwsClients.for_region(config.region)
        if args.command == "status":
            return show_status(config, clients, say)
        if args.command == "unpause":
            _ours(config, clients)
            airflow_api.unpause(clients.mwaa, config.mwaa_name)
            say(f"{DAG_ID} is unpaused in {config.mwaa_name}")
            return 0
        if args.command == "trigger":
            conf = {
                "full_refresh": args.full_refresh,
                "force_load": args.force_load,
                "tables": list(args.tables),
            }
            _ours(config, clients)
            say(f"triggered {airflow_api.trigger_run(clients.mwaa, config.mwaa_name, conf)}")
            return 0
        if args.command == "backfill":
            interval = _backfill_range(args)
            _ours(config, clients)
            backfill_id = airflow_api.create_backfill(
                clients.mwaa, config.mwaa_name, *interval,
                args.max_active_runs, args.reprocess_behavior, {"tables": list(args.tables)},
            )  # fmt: skip
            say(f"backfill {backfill_id} created: {DAG_ID} from {args.from_date.isoformat()}"
                f" to {args.to_date.isoformat()}, {args.max_active_runs} run(s) at a time")  # fmt: skip
            return 0
        if prompt is None and sys.stdin.isatty():
            prompt = getpass.getpass
        plan = Plan(dry_run=args.dry_run, say=say)
        waiter = EnvironmentWaiter(clients.mwaa, say=say, sleep=sleep or time.sleep)
        say(f"{'planning' if args.dry_run else 'applying'} {config.name_stem} in {config.region}")
        say(apply(config, clients, env, prompt, plan, waiter).summary())
        return 0
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
    except ClientError as error:
        print(f"error: AWS refused {error.operation_name}: {error_code(error)}: "
              f"{error.response.get('Error', {}).get('Message', '')}", file=sys.stderr)  # fmt: skip
    except BotoCoreError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    except OSError as error:  # e.g. a file of the project missing
        print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
    return 1
