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

from botocore.exceptions import BotoCoreError, ClientError

from deploy.mwaa import airflow_api, requirements_log
from deploy.mwaa.apply import apply
from deploy.mwaa.aws import (
    AwsClients,
    error_code,
    keep_request_bodies_out_of_logs,
)
from deploy.mwaa.config import (
    DAG_ID,
    DEFAULT_AIRFLOW_VERSION,
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
    _add_naming_arguments(parser, env)
    _add_environment_arguments(parser, env)
    _add_alerting_arguments(parser)
    _add_run_arguments(parser)
    return parser


def _add_naming_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Which environment, in which region, under which names."""
    parser.add_argument(
        "--env-name", default=env.get("MWAA_ENV_NAME", ""), help="MWAA environment name"
    )
    parser.add_argument(
        "--prefix", default=env.get("DEPLOY_PREFIX", "totesys"), help="start of every resource name"
    )
    parser.add_argument(
        "--secrets-prefix",
        default=env.get("MWAA_SECRETS_PREFIX", ""),
        help="Secrets Manager prefix of the connections (default: airflow/<env-name>/connections)",
    )
    parser.add_argument("--region", default=env.get("AWS_DEFAULT_REGION", "eu-west-2"))
    parser.add_argument(
        "--break-glass-role",
        default="",
        help="IAM role that may read the data buckets besides the pipeline and the deployer "
        "(default: <prefix>-break-glass)",
    )
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)


def _add_environment_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The MWAA environment itself: version, size, network, what ships."""
    parser.add_argument("--airflow-version", default=DEFAULT_AIRFLOW_VERSION)
    parser.add_argument("--environment-class", default="mw1.small")
    parser.add_argument("--min-workers", type=int, default=1)
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument(
        "--webserver-access-mode", default="PRIVATE_ONLY", choices=["PRIVATE_ONLY", "PUBLIC_ONLY"]
    )
    parser.add_argument(
        "--subnet-ids",
        type=_csv,
        default=_csv(env.get("MWAA_SUBNET_IDS", "")),
        help="two private subnets, comma-separated (needed to create)",
    )
    parser.add_argument(
        "--security-group-ids", type=_csv, default=_csv(env.get("MWAA_SECURITY_GROUP_IDS", ""))
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="ship tracked files with uncommitted changes (refused otherwise)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra Airflow configuration option, e.g. totesys.ingest_schedule='*/5 * * * *'",
    )


def _add_alerting_arguments(parser: argparse.ArgumentParser) -> None:
    """Who is emailed, and when the alarms fire (defaults: DeployConfig's)."""
    defaults = DeployConfig("x")
    parser.add_argument("--alert-emails", type=_csv, default=defaults.alert_emails)
    parser.add_argument("--alert-from", default=defaults.alert_from)
    parser.add_argument(
        "--lag-alarm-minutes",
        type=int,
        default=defaults.lag_alarm_minutes,
        help="alarm when a source change has waited longer than this to reach the warehouse",
    )
    parser.add_argument(
        "--dead-man-minutes",
        type=int,
        default=defaults.dead_man_minutes,
        help="alarm when no load has succeeded (or nothing reported at all) for this long",
    )


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
    config = DeployConfig(
        environment_name=args.env_name,
        prefix=args.prefix,
        region=args.region,
        project_root=args.project_root,
        airflow_version=args.airflow_version,
        environment_class=args.environment_class,
        min_workers=args.min_workers,
        max_workers=args.max_workers,
        schedulers=args.schedulers,
        webserver_access_mode=args.webserver_access_mode,
        subnet_ids=args.subnet_ids,
        security_group_ids=args.security_group_ids,
        alert_emails=args.alert_emails,
        alert_from=args.alert_from,
        extra_options=options,
        secrets_prefix=args.secrets_prefix,
        lag_alarm_minutes=args.lag_alarm_minutes,
        dead_man_minutes=args.dead_man_minutes,
        break_glass_role=args.break_glass_role,
        allow_dirty=args.allow_dirty,
    )
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
