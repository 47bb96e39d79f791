"""What a deployment should look like: one typed object built from flags and environment.

Names derive from a prefix and the environment name, so two environments (e.g. `dev` and
`prod`) never share a bucket, a role or a log group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_AIRFLOW_VERSION = "3.0.6"
DAG_ID = "totesys_etl"
SECRETS_PREFIX = "airflow/connections"
CONNECTION_IDS = ("totesys_db", "warehouse_db", "smtp_default")
# what MWAA's API accepts as AirflowConfigurationOptions keys and values
OPTION_KEY = re.compile(r"[a-z]+([a-z0-9._]*[a-z0-9_]+)?")
OPTION_VALUE = re.compile(r"[ -~]{1,65536}")
LOG_TYPES = ("DagProcessingLogs", "SchedulerLogs", "TaskLogs", "WebserverLogs", "WorkerLogs")


class DeployError(Exception):
    """A deployment problem the operator must fix; its message is one line."""


@dataclass(frozen=True)
class DeployConfig:
    environment_name: str
    prefix: str = "totesys"
    region: str = "eu-west-2"
    project_root: Path = Path(".")
    airflow_version: str = DEFAULT_AIRFLOW_VERSION
    environment_class: str = "mw1.small"
    min_workers: int = 1
    max_workers: int = 2
    schedulers: int = 2
    webserver_access_mode: str = "PRIVATE_ONLY"
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    alert_emails: tuple[str, ...] = ("data-team@terrifictotes.com",)
    alert_from: str = "totesys-airflow@terrifictotes.com"
    noncurrent_version_days: int = 30
    # where the connections live; one per environment when several share an account
    secrets_prefix: str = SECRETS_PREFIX
    extra_options: Mapping[str, str] = field(default_factory=dict)  # section.key -> value

    @property
    def name_stem(self) -> str:
        return f"{self.prefix}-{self.environment_name}".lower()

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
    def ses_smtp_host(self) -> str:
        return f"email-smtp.{self.region}.amazonaws.com"

    def validate(self) -> None:
        """Refuse, in one line, what AWS would refuse minutes into a deployment."""
        stem = self.name_stem
        if not stem.replace("-", "").isalnum() or not stem[0].isalpha():
            raise DeployError(
                f"prefix and environment name must be letters, digits and '-': {stem!r}"
            )
        if len(self.source_bucket) > 63:
            raise DeployError(f"bucket name {self.source_bucket!r} is longer than 63 characters")
        if not 1 <= self.min_workers <= self.max_workers:
            raise DeployError("workers: need 1 <= --min-workers <= --max-workers")
        if not self.secrets_prefix.strip("/") or self.secrets_prefix != self.secrets_prefix.strip(
            "/"
        ):
            raise DeployError(
                f"secrets prefix {self.secrets_prefix!r} must not start or end with '/'"
            )
        for option, value in self.extra_options.items():
            if not OPTION_KEY.fullmatch(option) or option.count(".") != 1:
                raise DeployError(f"option {option!r} must look like section.key, in lower case")
            if not OPTION_VALUE.fullmatch(value):
                raise DeployError(
                    f"option {option}: MWAA takes 1 to 65536 printable ASCII characters"
                )
