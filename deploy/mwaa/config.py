"""What a deployment should look like: one typed object built from flags and environment.

Every name derives from one stem, `<prefix>-<env>` (`totesys-prod`): the MWAA environment,
its buckets, role, log groups, connection secrets, metrics namespace, topic, alarms and
dashboard. So two environments (`dev`, `prod`) and two projects deploying the same
environment name (`--prefix totesys`, `--prefix other`) never share any of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticUndefined

from etl.config import (
    CONFIGURATION,
    DEFAULT_REGION,
    AlertSettings,
    shared,
)

DEFAULT_AIRFLOW_VERSION = "3.0.6"
# MWAA's constraints for each Airflow version this repository is tested against; a version
# without its file here was never run by the tests, so it is not deployed.
CONSTRAINTS_DIR = Path(__file__).resolve().parents[2] / "constraints"
CONSTRAINTS_FILE = re.compile(r"mwaa-airflow-(\d+\.\d+\.\d+)-constraints\.txt")
DAG_ID = "totesys_etl"
CONNECTION_IDS = ("totesys_db", "warehouse_db", "smtp_default")
# MWAA's API model (botocore's service-2.json): AirflowConfigurationOptions keys and values
OPTION_KEY = re.compile(r"[a-z]+([a-z0-9._]*[a-z0-9_]+)?")
OPTION_KEY_MAX = 64
OPTION_VALUE = re.compile(r"[ -~]{1,65536}")
# EnvironmentName is [a-zA-Z][0-9a-zA-Z-_]*, at most 80; ours also names buckets (lower case
# only, no '_') and a role, so only lower case: 'Prod' and 'prod' would share them
ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,79}")
PREFIX = re.compile(r"[a-z][a-z0-9-]*")
SUBNET_ID = re.compile(r"subnet-[a-zA-Z0-9\-._]+")
SECURITY_GROUP_ID = re.compile(r"sg-[a-zA-Z0-9\-._]+")
ROLE_NAME_MAX = 64  # IAM
ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
PROJECT_TAG = "project"  # on the environment, its role and its secrets: whose they are
MWAA_NAME_MAX = 80  # MWAA's EnvironmentName
# Secrets Manager names: letters, digits and /_+=.@- ; no wildcard (IAM would read it as one)
SECRETS_PREFIX = re.compile(r"[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)*")
METRICS_NAMESPACE_ROOT = "Totesys/Pipeline"  # + "/<stem>": one namespace per environment
MAX_WORKERS = 25  # MWAA's MaxWorkers limit (API model: 1-25)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# schedulers each environment class allows (MWAA API docs: mw1.micro runs one, others 2-5)
ENVIRONMENT_CLASSES = {
    "mw1.micro": range(1, 2),
    **{name: range(2, 6) for name in
       ("mw1.small", "mw1.medium", "mw1.large", "mw1.xlarge", "mw1.2xlarge")},
}  # fmt: skip
LOG_TYPES = ("DagProcessingLogs", "SchedulerLogs", "TaskLogs", "WebserverLogs", "WorkerLogs")


class DeployError(Exception):
    """A deployment problem the operator must fix; its message is one line."""


def supported_airflow_versions(constraints_dir: Path = CONSTRAINTS_DIR) -> tuple[str, ...]:
    """The MWAA Airflow versions whose constraints the repository carries, oldest first."""
    found = (CONSTRAINTS_FILE.fullmatch(p.name) for p in constraints_dir.iterdir())
    versions = {m.group(1) for m in found if m}
    return tuple(sorted(versions, key=lambda v: tuple(int(part) for part in v.split("."))))


def flag(
    default: Any = PydanticUndefined, *, description: str, flag: str, env: str = "", **more: Any
) -> Any:
    """A deployment setting's declaration: its default (none: required), what it means, its
    command-line flag and the environment variable the flag falls back to (the table in
    docs/deploy-mwaa.md is rendered from these)."""
    if "default_factory" not in more:
        more["default"] = default
    return Field(description=description, json_schema_extra={"flag": flag, "env": env}, **more)


@dataclass(frozen=True, config=CONFIGURATION)
class DeployConfig:
    environment_name: str = flag(
        description="the environment: `<prefix>-<env>` names it and everything it has",
        flag="--env-name",
        env="MWAA_ENV_NAME",
    )
    prefix: str = flag(
        "totesys",
        description="the start of every resource name",
        flag="--prefix",
        env="DEPLOY_PREFIX",
    )
    region: str = flag(
        DEFAULT_REGION, description="the AWS region", flag="--region", env="AWS_DEFAULT_REGION"
    )
    project_root: Path = Field(default=Path("."), description="the tree that is shipped")
    airflow_version: str = flag(
        DEFAULT_AIRFLOW_VERSION,
        description="an MWAA Airflow version whose constraints are in `constraints/`",
        flag="--airflow-version",
    )
    environment_class: str = flag(
        "mw1.small", description="MWAA's environment class", flag="--environment-class"
    )
    min_workers: int = flag(1, description="MWAA's fewest workers", flag="--min-workers")
    max_workers: int = flag(
        2, description=f"MWAA's most workers (at most {MAX_WORKERS})", flag="--max-workers"
    )
    schedulers: int = flag(
        2, description="schedulers (1 on `mw1.micro`, 2-5 on the others)", flag="--schedulers"
    )
    webserver_access_mode: str = flag(
        "PRIVATE_ONLY",
        description="`PRIVATE_ONLY` or `PUBLIC_ONLY`",
        flag="--webserver-access-mode",
    )
    subnet_ids: tuple[str, ...] = flag(
        (),
        description="two private subnets in different zones, comma-separated (needed to "
        "create; an existing environment's cannot change)",
        flag="--subnet-ids",
        env="MWAA_SUBNET_IDS",
    )
    security_group_ids: tuple[str, ...] = flag(
        (),
        description="one to five security groups, comma-separated (needed to create)",
        flag="--security-group-ids",
        env="MWAA_SECURITY_GROUP_IDS",
    )
    alert_emails: tuple[str, ...] = shared(AlertSettings, "alert_emails", flag="--alert-emails")
    alert_from: str = shared(AlertSettings, "alert_from", flag="--alert-from")
    noncurrent_version_days: int = Field(
        default=30, description="days an overwritten or deleted object's old version is kept"
    )
    secrets_prefix: str = flag(
        "",
        description="where the connections live; empty: `airflow/<prefix>-<env>/connections`",
        flag="--secrets-prefix",
        env="MWAA_SECRETS_PREFIX",
    )
    extra_options: Mapping[str, str] = flag(
        description="any other Airflow option, `section.key=value` (repeatable)",
        flag="--option",
        default_factory=dict,
    )
    lag_alarm_minutes: int = flag(
        30,
        description="alarm when a source change waited longer than this",
        flag="--lag-alarm-minutes",
    )
    dead_man_minutes: int = flag(
        60,
        description="alarm when no load succeeded (or nothing reported) this long; at least "
        "twice `totesys.load_every_minutes`",
        flag="--dead-man-minutes",
    )
    break_glass_role: str = flag(
        "",
        description="the role that may read the data buckets besides the pipeline and the "
        "deployer; empty: `<prefix>-break-glass` (it need not exist until someone needs it)",
        flag="--break-glass-role",
    )
    allow_dirty: bool = flag(
        False,
        description="ship tracked files with uncommitted changes as they are",
        flag="--allow-dirty",
    )

    @property
    def name_stem(self) -> str:
        """`<prefix>-<env>`: every name of this deployment starts from it."""
        return f"{self.prefix}-{self.environment_name}".lower()

    @property
    def mwaa_name(self) -> str:
        """The MWAA environment's name: the stem, so `--prefix other --env-name test` is
        another environment than `--env-name test`, never the same one repointed."""
        return self.name_stem

    @property
    def metrics_namespace(self) -> str:
        """This environment's own CloudWatch namespace: the role may publish only there."""
        return f"{METRICS_NAMESPACE_ROOT}/{self.name_stem}"

    @property
    def log_group_names(self) -> tuple[str, ...]:
        """The log groups MWAA makes (`airflow-<name>-<kind>`), named exactly: a pattern
        `airflow-<name>-*` would also match environment `<name>-2`'s."""
        kinds = ("DAGProcessing", "Scheduler", "Task", "WebServer", "Worker")
        return tuple(f"airflow-{self.mwaa_name}-{kind}" for kind in kinds)

    @property
    def ingestion_bucket(self) -> str:
        return f"{self.name_stem}-ingestion"

    @property
    def processed_bucket(self) -> str:
        return f"{self.name_stem}-processed"

    @property
    def source_bucket(self) -> str:
        """`airflow-` first: the name MWAA's console policy (AmazonMWAAFullConsoleAccess)
        lets people browse."""
        return f"airflow-{self.name_stem}-source"

    @property
    def buckets(self) -> tuple[str, str, str]:
        return (self.source_bucket, self.ingestion_bucket, self.processed_bucket)

    @property
    def role_name(self) -> str:
        return f"{self.name_stem}-mwaa-execution"

    @property
    def connections_prefix(self) -> str:
        """Each environment its own: the role and the secrets backend are scoped to it."""
        return self.secrets_prefix or f"airflow/{self.name_stem}/connections"

    @property
    def break_glass_role_name(self) -> str:
        return self.break_glass_role or f"{self.prefix}-break-glass"

    @property
    def ses_smtp_host(self) -> str:
        return f"email-smtp.{self.region}.amazonaws.com"

    def validate(self) -> None:
        """Refuse, in one line, what AWS would refuse minutes into a deployment (MWAA's
        input limits from its API model and documentation), before anything is written."""
        self._check_names()
        self._check_capacity()
        self._check_network()
        self._check_alerts()
        self._check_options()

    def _check_names(self) -> None:
        supported = supported_airflow_versions()
        if self.airflow_version not in supported:
            raise DeployError(
                f"--airflow-version {self.airflow_version!r}: one of {', '.join(supported)}, "
                "the MWAA versions whose constraints are in constraints/ (what the tests ran)"
            )
        name = self.environment_name
        if not ENVIRONMENT_NAME.fullmatch(name):
            raise DeployError(
                f"environment name {name!r}: up to 80 lower-case letters, digits and '-', "
                "starting with a letter (it names buckets and a role, which are lower case, "
                "so names differing only in case would share them)"
            )
        if not PREFIX.fullmatch(self.prefix):
            raise DeployError(
                f"prefix {self.prefix!r}: lower-case letters, digits and '-', starting with a letter"
            )
        if len(self.mwaa_name) > MWAA_NAME_MAX:
            raise DeployError(
                f"environment name {self.mwaa_name!r} (<prefix>-<env>) is longer than "
                f"{MWAA_NAME_MAX} characters"
            )
        longest = max(self.buckets, key=len)
        if len(longest) > 63:
            raise DeployError(f"bucket name {longest!r} is longer than 63 characters")
        if not ROLE_NAME.fullmatch(self.break_glass_role_name):
            raise DeployError(
                f"--break-glass-role {self.break_glass_role_name!r}: an IAM role name "
                "(letters, digits and +=,.@_-, at most 64)"
            )
        if len(self.role_name) > ROLE_NAME_MAX:
            raise DeployError(
                f"role name {self.role_name!r} is longer than {ROLE_NAME_MAX} characters"
            )

    def _check_capacity(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers <= MAX_WORKERS:
            raise DeployError(f"workers: need 1 <= --min-workers <= --max-workers <= {MAX_WORKERS}")
        allowed = ENVIRONMENT_CLASSES.get(self.environment_class)
        if allowed is None:
            raise DeployError(
                f"environment class {self.environment_class!r}: one of {', '.join(ENVIRONMENT_CLASSES)}"
            )
        if self.schedulers not in allowed:
            raise DeployError(
                f"{self.environment_class} runs {allowed.start} to {allowed.stop - 1} "
                f"scheduler(s), not {self.schedulers}"
            )

    def _check_network(self) -> None:
        if self.subnet_ids and (
            len(set(self.subnet_ids)) != 2
            or len(self.subnet_ids) != 2
            or not all(SUBNET_ID.fullmatch(subnet) for subnet in self.subnet_ids)
        ):
            raise DeployError("--subnet-ids: two distinct subnet-... ids, in different zones")
        if self.security_group_ids and (
            len(self.security_group_ids) > 5
            or not all(SECURITY_GROUP_ID.fullmatch(group) for group in self.security_group_ids)
        ):
            raise DeployError("--security-group-ids: one to five sg-... ids")
        if self.secrets_prefix and not SECRETS_PREFIX.fullmatch(self.secrets_prefix):
            # '*' or '?' would widen the role's secret ARN into a wildcard
            raise DeployError(
                f"secrets prefix {self.secrets_prefix!r}: letters, digits and /_+=.@- only, "
                "not starting or ending with '/' (no wildcards)"
            )

    def _check_alerts(self) -> None:
        for address in (*self.alert_emails, self.alert_from):
            if not EMAIL.fullmatch(address):
                raise DeployError(
                    f"{address!r} is not an email address (--alert-emails, --alert-from)"
                )
        if not 1 <= self.lag_alarm_minutes <= 1440:
            raise DeployError("--lag-alarm-minutes: 1 to 1440")
        if not 5 <= self.dead_man_minutes <= 1440:
            # a CloudWatch alarm's period times its evaluation periods is at most one day
            raise DeployError("--dead-man-minutes: 5 to 1440")

    def _check_options(self) -> None:
        for option, value in self.extra_options.items():
            if not OPTION_KEY.fullmatch(option) or option.count(".") != 1:
                raise DeployError(f"option {option!r} must look like section.key, in lower case")
            if len(option) > OPTION_KEY_MAX:
                raise DeployError(f"option {option!r} is longer than {OPTION_KEY_MAX} characters")
            if not OPTION_VALUE.fullmatch(value):
                raise DeployError(
                    f"option {option}: MWAA takes 1 to 65536 printable ASCII characters"
                )
