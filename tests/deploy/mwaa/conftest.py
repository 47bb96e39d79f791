"""S3, IAM, Secrets Manager and STS from a moto server over HTTP (see moto_server.py);
MWAA, which moto lacks, through botocore's Stubber, so every request is still validated
against the real API model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from deploy.mwaa.aws import AwsClients
from deploy.mwaa.cli import main
from devstack.processes import free_port, spawn, terminate, wait_for_port
from devstack.stack import MOTO_CREDENTIALS, REGION
from tests.conftest import REPO_ROOT

SUBNETS = ("subnet-0aaa1111", "subnet-0bbb2222")
SECURITY_GROUP = "sg-0ccc3333"
SECRET_ENV = {
    "TOTESYS_DB_URL": "postgresql://reader:S3cr3t-totesys-pw@totesys.example.com:5432/totesys",
    "WAREHOUSE_DB_URL": "postgresql://loader:S3cr3t-warehouse-pw@dw.example.com:5432/warehouse",
    "SES_SMTP_USERNAME": "AKIASESUSEREXAMPLE",
    "SES_SMTP_PASSWORD": "S3cr3t-ses-smtp-pw",
}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}  # fmt: skip
SECRET_VALUES = ("S3cr3t-totesys-pw", "S3cr3t-warehouse-pw", "S3cr3t-ses-smtp-pw")


@dataclass(frozen=True)
class AwsEmulator:
    url: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture(scope="session")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsEmulator]:
    """A moto server of our own for the AWS account a deployment provisions."""
    log = tmp_path_factory.mktemp("moto-deploy") / "moto.log"
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "tests.deploy.mwaa.moto_server",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    pid = spawn(argv, log, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        wait_for_port("moto server", "127.0.0.1", port, pid, log, 60.0)
        yield AwsEmulator(f"http://127.0.0.1:{port}")
    finally:
        terminate(pid)


@dataclass
class Deployment:
    """One deployment under test: its AWS clients, the MWAA stub and what MWAA was sent."""

    clients: AwsClients
    stub: Stubber
    env_name: str
    project: Path
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def run(self, *args: str, env: dict[str, str] | None = None) -> int:
        """`python -m deploy mwaa ...` in-process with these clients; output kept. `args`
        come last, so they override the defaults here (argparse keeps the last)."""
        argv = ["--env-name", self.env_name, "--region", REGION,
                "--project-root", str(self.project),
                "--subnet-ids", ",".join(SUBNETS), "--security-group-ids", SECURITY_GROUP,
                *args]  # fmt: skip
        return main(argv, clients=self.clients, env=env if env is not None else SECRET_ENV,
                    say=self.output.append, sleep=lambda seconds: None)  # fmt: skip

    @property
    def mwaa_name(self) -> str:
        """The MWAA environment's name: `<prefix>-<env>`, the stem of every name."""
        return f"totesys-{self.env_name}"

    @property
    def secrets_prefix(self) -> str:
        """Each environment's own, by default."""
        return f"airflow/{self.mwaa_name}/connections"

    def another_environment(self) -> Deployment:
        """A second environment in the same account (same clients and MWAA stub)."""
        return Deployment(self.clients, self.stub, f"t{uuid.uuid4().hex[:10]}", self.project,
                          self.sent, self.output)  # fmt: skip

    def buckets(self) -> set[str]:
        """This environment's buckets that exist."""
        listed = self.clients.s3.list_buckets()["Buckets"]
        return {bucket["Name"] for bucket in listed if self.env_name in bucket["Name"]}

    @property
    def source_bucket(self) -> str:
        return f"airflow-totesys-{self.env_name}-source"

    def versions(self, key: str) -> list[str]:
        listed = self.clients.s3.list_object_versions(Bucket=self.source_bucket, Prefix=key)
        return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]

    def current_version(self, key: str) -> str:
        return str(self.clients.s3.head_object(Bucket=self.source_bucket, Key=key)["VersionId"])


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_IDENTITY})  # fmt: skip
    return done.stdout


def commit(root: Path, message: str) -> None:
    """Track and commit everything in the project copy (what an operator deploys)."""
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "--allow-empty", "-m", message)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what gets deployed, free to edit: a git work tree of its own, since only
    tracked files are shipped."""
    root = tmp_path / "project"
    for folder in ("dags", "etl", "plugins"):
        shutil.copytree(REPO_ROOT / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(REPO_ROOT / "requirements.txt", root / "requirements.txt")
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")
    git(root, "init", "--quiet")
    commit(root, "the project as deployed")
    return root


@pytest.fixture
def deployment(aws: AwsEmulator, project: Path) -> Iterator[Deployment]:
    mwaa = boto3.client(
        "mwaa",
        region_name=REGION,
        aws_access_key_id="stubbed",
        aws_secret_access_key="stubbed",
    )
    clients = AwsClients(
        s3=aws.client("s3"),
        iam=aws.client("iam"),
        secretsmanager=aws.client("secretsmanager"),
        sts=aws.client("sts"),
        mwaa=mwaa,
        logs=aws.client("logs"),
        cloudwatch=aws.client("cloudwatch"),
        sns=aws.client("sns"),
        kms=aws.client("kms"),
    )
    deployment = Deployment(clients, Stubber(mwaa), f"t{uuid.uuid4().hex[:10]}", project)

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        deployment.sent.setdefault(model.name, []).append(dict(params))

    mwaa.meta.events.register("provide-client-params.mwaa.*", record)
    with deployment.stub:
        yield deployment


def as_get_environment(created: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    """What get_environment answers for an environment made with these create arguments."""
    environment = {key: value for key, value in created.items() if key != "Tags"}
    environment["LoggingConfiguration"] = {
        kind: {**setting, "CloudWatchLogGroupArn": log_group_arn(created["Name"], kind)}
        for kind, setting in created["LoggingConfiguration"].items()
    }
    environment.update(
        Status=status,
        Arn=f"arn:aws:airflow:{REGION}:123456789012:environment/{created['Name']}",
        WebserverUrl="abc123.eu-west-2.airflow.amazonaws.com",
        Tags=created.get("Tags", {}),
        **extra,
    )
    return {"Environment": environment}


# the log group MWAA makes for each kind of log
LOG_GROUP_SUFFIX = {"DagProcessingLogs": "DAGProcessing", "SchedulerLogs": "Scheduler",
                    "TaskLogs": "Task", "WebserverLogs": "WebServer", "WorkerLogs": "Worker"}  # fmt: skip


def log_group_arn(environment: str, kind: str) -> str:
    name = f"airflow-{environment}-{LOG_GROUP_SUFFIX[kind]}"
    return f"arn:aws:logs:{REGION}:123456789012:log-group:{name}:*"


def not_found(stub: Stubber) -> None:
    stub.add_client_error("get_environment", service_error_code="ResourceNotFoundException",
                          service_message="Environment not found", http_status_code=404)  # fmt: skip


def expect_create(deployment: Deployment) -> None:
    """MWAA will say: absent, created, CREATING, then AVAILABLE."""
    stub, name = deployment.stub, deployment.mwaa_name
    not_found(stub)
    stub.add_response(
        "create_environment", {"Arn": f"arn:aws:airflow:{REGION}:123456789012:environment/{name}"}
    )
    stub.add_response("get_environment", {"Environment": {"Name": name, "Status": "CREATING"}})
    stub.add_response("get_environment", {"Environment": {"Name": name, "Status": "AVAILABLE"}})


def expect_owned(deployment: Deployment) -> None:
    """MWAA will say the environment exists and is this project's (tagged project=totesys)."""
    deployment.stub.add_response("get_environment", {"Environment": {
        "Name": deployment.mwaa_name, "Status": "AVAILABLE", "Tags": {"project": "totesys"}}})  # fmt: skip
