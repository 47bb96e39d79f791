"""The MWAA environment: create it when absent, otherwise update only the fields that
differ (new plugins/requirements versions included), then wait until it settles."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.artifacts import DAGS_PREFIX, PLUGINS_KEY, REQUIREMENTS_KEY
from deploy.mwaa.aws import error_code, is_not_found
from deploy.mwaa.config import LOG_TYPES, PROJECT_TAG, DeployConfig, DeployError
from deploy.mwaa.plan import Plan

SECRETS_BACKEND = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
# aws_default is never looked up in Secrets Manager: on MWAA it is the execution role
SKIP_AWS_DEFAULT = "^(?!aws_default$).*$"
ROLE_PROPAGATION_ATTEMPTS = 8
ROLE_PROPAGATION_SECONDS = 15.0
ROLE_MESSAGE = re.compile(r"\brole\b", re.IGNORECASE)
BUSY = frozenset(
    {"CREATING", "UPDATING", "ROLLING_BACK", "PENDING", "CREATING_SNAPSHOT", "MAINTENANCE"}
)
FAILED = frozenset({"CREATE_FAILED", "UPDATE_FAILED", "UNAVAILABLE", "DELETING", "DELETED"})
# fields update_environment accepts and we manage (NetworkConfiguration handled apart)
UPDATABLE = (
    "ExecutionRoleArn", "SourceBucketArn", "DagS3Path", "PluginsS3Path", "PluginsS3ObjectVersion",
    "RequirementsS3Path", "RequirementsS3ObjectVersion", "AirflowVersion", "EnvironmentClass",
    "MinWorkers", "MaxWorkers", "Schedulers", "WebserverAccessMode", "LoggingConfiguration",
    "AirflowConfigurationOptions",
)  # fmt: skip


@dataclass(frozen=True)
class ArtifactVersions:
    plugins: str
    requirements: str


def airflow_options(config: DeployConfig, account: str) -> dict[str, str]:
    """Airflow configuration MWAA writes as AIRFLOW__SECTION__KEY variables: the secrets
    backend, SES for email, log masking, and the DAG's own settings (read by
    totesys_airflow.config). `account`: the AWS account that must own the buckets."""
    options = {
        "secrets.backend": SECRETS_BACKEND,
        "secrets.backend_kwargs": json.dumps(
            {
                "connections_prefix": config.connections_prefix,
                "connections_lookup_pattern": SKIP_AWS_DEFAULT,
                "variables_prefix": None,
                "config_prefix": None,
            }
        ),
        # a password is masked in logs also as it appears percent-encoded in a URL
        "logging.secret_mask_adapter": "urllib.parse.quote",
        "email.email_conn_id": "smtp_default",
        "smtp.smtp_host": config.ses_smtp_host,
        "smtp.smtp_port": "587",
        "smtp.smtp_starttls": "True",
        "smtp.smtp_ssl": "False",
        "smtp.smtp_mail_from": config.alert_from,
        "totesys.ingestion_bucket": config.ingestion_bucket,
        "totesys.processed_bucket": config.processed_bucket,
        "totesys.alert_emails": ",".join(config.alert_emails),
        "totesys.alert_from": config.alert_from,
        # the pipeline's and the listener's metrics, which the alarms watch
        "totesys.metrics_sink": "cloudwatch",
        "totesys.environment": config.mwaa_name,
        "totesys.metrics_namespace": config.metrics_namespace,
        "totesys.expected_bucket_owner": account,
    }
    overridden = sorted(set(options) & set(config.extra_options))
    if overridden:
        # e.g. secrets.backend_kwargs would point the backend at another environment's
        # secrets, totesys.ingestion_bucket at a bucket the role cannot write
        raise DeployError(
            f"option {overridden[0]} is set by the deployer; use its flag or leave it out"
        )
    options.update(config.extra_options)
    return options


def desired_environment(
    config: DeployConfig, role_arn: str, versions: ArtifactVersions, account: str
) -> dict[str, Any]:
    return {
        "Name": config.mwaa_name,
        "ExecutionRoleArn": role_arn,
        "SourceBucketArn": f"arn:aws:s3:::{config.source_bucket}",
        "DagS3Path": DAGS_PREFIX,
        "PluginsS3Path": PLUGINS_KEY,
        "PluginsS3ObjectVersion": versions.plugins,
        "RequirementsS3Path": REQUIREMENTS_KEY,
        "RequirementsS3ObjectVersion": versions.requirements,
        "NetworkConfiguration": {
            "SubnetIds": list(config.subnet_ids),
            "SecurityGroupIds": list(config.security_group_ids),
        },
        "LoggingConfiguration": {kind: {"Enabled": True, "LogLevel": "INFO"} for kind in LOG_TYPES},
        "AirflowVersion": config.airflow_version,
        "EnvironmentClass": config.environment_class,
        "MinWorkers": config.min_workers,
        "MaxWorkers": config.max_workers,
        "Schedulers": config.schedulers,
        "WebserverAccessMode": config.webserver_access_mode,
        "AirflowConfigurationOptions": airflow_options(config, account),
        "Tags": {PROJECT_TAG: config.prefix},
    }


def differences(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The update_environment arguments that would bring `current` to `desired`."""
    changed = {
        field: desired[field]
        for field in UPDATABLE
        if _comparable(current, field) != desired[field]
    }
    network = current.get("NetworkConfiguration", {})
    wanted = desired["NetworkConfiguration"]
    groups = wanted["SecurityGroupIds"]
    if groups and sorted(groups) != sorted(network.get("SecurityGroupIds", [])):
        changed["NetworkConfiguration"] = {"SecurityGroupIds": groups}
    return changed


def _comparable(current: Mapping[str, Any], field: str) -> Any:
    value = current.get(field)
    if field == "AirflowConfigurationOptions" and value is not None:
        return {key: _boolean_as_written(option) for key, option in value.items()}
    if field == "LoggingConfiguration" and value is not None:
        # get_environment adds each log group's ARN; compare what we set
        return {kind: {"Enabled": v.get("Enabled"), "LogLevel": v.get("LogLevel")}
                for kind, v in value.items()}  # fmt: skip
    return value


def _boolean_as_written(value: str) -> str:
    """MWAA may hand back `true` for the `True` it was given; neither is a change."""
    return value.capitalize() if value.lower() in ("true", "false") else value


def current_environment(mwaa: Any, name: str) -> dict[str, Any] | None:
    try:
        environment: dict[str, Any] = mwaa.get_environment(Name=name)["Environment"]
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return environment


def check_owner(current: Mapping[str, Any] | None, config: DeployConfig) -> None:
    """Checked before anything is written: an existing environment of this name must carry
    this project's tag, so a deployment never repoints another project's environment at its
    own role and bucket (names are `<prefix>-<env>`, yet `a-b` + `c` and `a` + `b-c` meet)."""
    if current is None:
        return
    owner = dict(current.get("Tags") or {}).get(PROJECT_TAG)
    if owner != config.prefix:
        whose = f"project {owner!r}" if owner else f"no project (no {PROJECT_TAG} tag)"
        raise DeployError(
            f"mwaa environment {config.mwaa_name} belongs to {whose}, not {config.prefix!r}: "
            "choose another --prefix or --env-name"
        )


def check_network(current: Mapping[str, Any] | None, config: DeployConfig) -> None:
    """Checked before anything is written: a new environment needs its network, and an
    existing one cannot move to other subnets."""
    if current is None:
        if len(config.subnet_ids) != 2 or not config.security_group_ids:
            raise DeployError(
                "a new environment needs --subnet-ids (two private subnets) and --security-group-ids"
            )
        return
    present = current.get("NetworkConfiguration", {}).get("SubnetIds", [])
    if config.subnet_ids and sorted(config.subnet_ids) != sorted(present):
        raise DeployError(
            "the subnets of an existing MWAA environment cannot change; "
            "keep them or create a new environment"
        )


def ensure_environment(
    mwaa: Any,
    current: dict[str, Any] | None,
    desired: dict[str, Any],
    plan: Plan,
    waiter: EnvironmentWaiter,
    role_is_new: bool = False,
) -> dict[str, Any] | None:
    """`current` is what get_environment returned when the run began (None: absent). The
    environment as it settled after our create or update; None when none was made."""
    name = desired["Name"]
    resource = f"mwaa environment {name}"
    if current is None:
        started = datetime.now(UTC)
        create = mwaa.create_environment
        if role_is_new:
            create = _retrying_while_role_propagates(create, waiter)
        plan.change(resource, f"create (Airflow {desired['AirflowVersion']})", create, **desired)
        return None if plan.dry_run else waiter.wait(name, "create", started)
    if current.get("Status") in BUSY and not plan.dry_run:
        waiter.wait(name, "the running change")
        current = current_environment(mwaa, name) or current
    if current.get("Status") == "CREATE_FAILED":
        raise DeployError(
            f"{resource} is CREATE_FAILED ({_reason(current)}); delete it, then apply again"
        )
    changed = differences(current, desired)
    if not changed:
        last = current.get("LastUpdate", {})
        if current.get("Status") != "AVAILABLE" or last.get("Status") not in (None, "SUCCESS"):
            waiter.say(f"note: {resource} is {current.get('Status')}, last update "
                       f"{last.get('Status', '-')}: {_reason(current)}")  # fmt: skip
        return None
    started = datetime.now(UTC)
    plan.change(
        resource,
        f"update {', '.join(sorted(changed))}",
        mwaa.update_environment,
        Name=name,
        **changed,
    )
    return None if plan.dry_run else waiter.wait(name, "update", started)


def _role_not_visible_yet(error: ClientError) -> bool:
    """MWAA answers a role it cannot use yet with a ValidationException about the role
    ("Failed to assume role ...", "Provided role does not have sufficient permissions ...");
    any other ValidationException (a bad input) is final."""
    message = str(error.response.get("Error", {}).get("Message", ""))
    return error_code(error) == "ValidationException" and ROLE_MESSAGE.search(message) is not None


def _retrying_while_role_propagates(
    create: Callable[..., Any], waiter: EnvironmentWaiter
) -> Callable[..., Any]:
    """IAM is eventually consistent: MWAA may not see a role made seconds ago yet."""

    def call(**kwargs: Any) -> Any:
        for attempt in range(ROLE_PROPAGATION_ATTEMPTS):
            try:
                return create(**kwargs)
            except ClientError as error:
                if not _role_not_visible_yet(error) or attempt == ROLE_PROPAGATION_ATTEMPTS - 1:
                    raise
                waiter.say(
                    f"  the new execution role is not visible to MWAA yet; retrying ({error_code(error)})"
                )
                waiter.sleep(ROLE_PROPAGATION_SECONDS)
        raise AssertionError("unreachable")

    return call


@dataclass
class EnvironmentWaiter:
    """Polls until the environment settles; AVAILABLE is success, anything else (or a
    rolled-back update) is a DeployError carrying MWAA's reason."""

    mwaa: Any
    say: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 30.0
    timeout_seconds: float = 3 * 3600.0

    def wait(self, name: str, what: str, started: datetime | None = None) -> dict[str, Any]:
        """`started`: when our create/update was sent. Until MWAA shows it (a busy status, or
        a LastUpdate from then on), a settled reading is the state from before, not ours."""
        waited = 0.0
        ours_seen = started is None
        while True:
            environment = current_environment(self.mwaa, name)
            if environment is None:
                raise DeployError(f"mwaa environment {name} disappeared while waiting for {what}")
            status = str(environment.get("Status"))
            self.say(f"  {name}: {status} after {_minutes(waited)}")
            ours_seen = ours_seen or status in BUSY or _updated_since(environment, started)
            if not ours_seen:
                pass
            elif status == "AVAILABLE":
                last = environment.get("LastUpdate", {})
                if what == "update" and last.get("Status") == "FAILED":
                    raise DeployError(
                        f"update of {name} failed and was rolled back: {_reason(environment)}"
                    )
                return environment
            elif status in FAILED:
                raise DeployError(f"{what} of {name} ended {status}: {_reason(environment)}")
            if waited >= self.timeout_seconds:
                raise DeployError(
                    f"{name} still {status} after {_minutes(waited)}; not waiting longer"
                )
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds


def _updated_since(environment: Mapping[str, Any], started: datetime | None) -> bool:
    created = environment.get("LastUpdate", {}).get("CreatedAt")
    return started is not None and isinstance(created, datetime) and created >= started


def _reason(environment: Mapping[str, Any]) -> str:
    error = environment.get("LastUpdate", {}).get("Error", {})
    code, message = error.get("ErrorCode"), error.get("ErrorMessage")
    return f"{code}: {message}" if code or message else "MWAA gave no reason"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
