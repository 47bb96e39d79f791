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
from deploy.mwaa.artifacts import (
    DAGS_PREFIX,
    commit_record,
    dag_artifacts,
    plugins_zip,
    requirements,
    uncommitted_changes,
    untracked_files,
)
from deploy.mwaa.aws import (
    AwsClients,
    error_code,
    expect_bucket_owner,
    keep_request_bodies_out_of_logs,
)
from deploy.mwaa.buckets import check_bucket, ensure_bucket, principal_patterns
from deploy.mwaa.config import (
    DAG_ID,
    DEFAULT_AIRFLOW_VERSION,
    DeployConfig,
    DeployError,
)
from deploy.mwaa.dag_options import check_dag_options
from deploy.mwaa.environment import (
    ArtifactVersions,
    EnvironmentWaiter,
    airflow_options,
    check_network,
    check_owner,
    current_environment,
    desired_environment,
    ensure_environment,
)
from deploy.mwaa.monitoring import check_dead_man, ensure_monitoring
from deploy.mwaa.plan import Plan
from deploy.mwaa.role import current_role, ensure_execution_role
from deploy.mwaa.secrets import Prompt, plan_connection_secrets
from deploy.mwaa.sync import sync_dag_folder, sync_versioned_object

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
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
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
        "--break-glass-role",
        default="",
        help="IAM role that may read the data buckets besides the pipeline and the deployer "
        "(default: <prefix>-break-glass)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="ship tracked files with uncommitted changes (refused otherwise)",
    )
    parser.add_argument("--alert-emails", type=_csv, default=DeployConfig("x").alert_emails)
    parser.add_argument("--alert-from", default=DeployConfig("x").alert_from)
    parser.add_argument(
        "--lag-alarm-minutes",
        type=int,
        default=DeployConfig("x").lag_alarm_minutes,
        help="alarm when a source change has waited longer than this to reach the warehouse",
    )
    parser.add_argument(
        "--dead-man-minutes",
        type=int,
        default=DeployConfig("x").dead_man_minutes,
        help="alarm when no load has succeeded (or nothing reported at all) for this long",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra Airflow configuration option, e.g. totesys.ingest_schedule='*/5 * * * *'",
    )
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
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
    return parser  # fmt: skip


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


def apply(
    config: DeployConfig,
    clients: AwsClients,
    env: Mapping[str, str],
    prompt: Prompt | None,
    plan: Plan,
    waiter: EnvironmentWaiter,
) -> Plan:
    """Everything is read and checked first (the DAG's options, the artifacts and that they
    are committed, the network, every connection value, and whose the environment, role,
    buckets and secrets are), so a bad or missing value, or a resource of another project,
    stops the run before anything is written."""
    root = config.project_root
    caller = clients.sts.get_caller_identity()
    account = str(caller["Account"])
    dag_settings = check_dag_options(airflow_options(config, account), root)
    check_dead_man(config, int(dag_settings.load_every_minutes))
    dags = dag_artifacts(root)
    for name in untracked_files(root):
        plan.say(f"note: {name} is not tracked by git, so it is not shipped")
    plugins, requirements_txt = plugins_zip(root), requirements(root)
    dirty = uncommitted_changes(root)
    if dirty and not config.allow_dirty:
        raise DeployError(
            f"{dirty[0]} has uncommitted changes ({len(dirty)} file(s) in all): commit them, "
            "or pass --allow-dirty to ship the working tree as it is"
        )
    for name in dirty:
        plan.say(f"note: {name} ships with uncommitted changes (--allow-dirty)")
    record = commit_record(root, bool(dirty))
    expect_bucket_owner(clients.s3, account)
    existing = current_environment(clients.mwaa, config.mwaa_name)
    check_owner(existing, config)
    check_network(existing, config)
    role = current_role(clients.iam, config)
    bucket_exists = {bucket: check_bucket(clients.s3, bucket, config) for bucket in config.buckets}
    dag_files = {artifact.key.removeprefix(f"{DAGS_PREFIX}/") for artifact in dags}
    secrets = plan_connection_secrets(
        clients.secretsmanager, config, env, prompt, plan.dry_run, dag_files
    )
    for secret in secrets:
        if secret.call is None:
            plan.would(secret.resource, secret.action)
        else:
            plan.change(secret.resource, secret.action, secret.call, **secret.kwargs)
    # the raw extracts hold personal data: only the pipeline, the deployer and break-glass
    data_readers = [
        f"arn:aws:iam::{account}:role/{config.role_name}",
        f"arn:aws:iam::{account}:role/{config.break_glass_role_name}",
        *principal_patterns(str(caller["Arn"])),
    ]
    for bucket in config.buckets:
        readers = None if bucket == config.source_bucket else data_readers
        ensure_bucket(clients.s3, bucket, config, plan, bucket_exists[bucket], readers)
    role_arn = ensure_execution_role(clients.iam, config, account, plan, role)
    ensure_monitoring(clients.cloudwatch, clients.sns, clients.kms, config, account, plan)
    sync_dag_folder(clients.s3, config.source_bucket, dags, plan)
    versions = ArtifactVersions(
        plugins=sync_versioned_object(clients.s3, config.source_bucket, plugins, plan),
        requirements=sync_versioned_object(
            clients.s3, config.source_bucket, requirements_txt, plan
        ),
    )
    sync_versioned_object(clients.s3, config.source_bucket, record, plan)
    desired = desired_environment(config, role_arn, versions, account)
    role_is_new = any(
        c.resource.startswith("iam role") and c.action.startswith("create") for c in plan.changes
    )
    settled = ensure_environment(clients.mwaa, existing, desired, plan, waiter, role_is_new)
    if settled is not None:
        # MWAA installs requirements.txt on every create and update, and is AVAILABLE even
        # when pip failed: what pip wrote decides
        pip_failed, line = requirements_log.describe(clients.logs, settled)
        if pip_failed:
            raise DeployError(f"{config.mwaa_name} is AVAILABLE but {line}")
        plan.say(line)
    return plan


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
