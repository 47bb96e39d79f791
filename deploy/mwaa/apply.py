"""`python -m deploy mwaa apply`: every input read and checked first, then each resource made
to match, then the environment settled and pip's install log read.

The order is the safety: a bad or missing value, or a resource of another project, stops
the run before anything is written (`_check_inputs`), and MWAA is told about new artifact
versions only after they are in the source bucket (`_provision`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy.mwaa import requirements_log
from deploy.mwaa.artifacts import (
    DAGS_PREFIX,
    Artifact,
    commit_record,
    dag_artifacts,
    plugins_zip,
    requirements,
    uncommitted_changes,
    untracked_files,
)
from deploy.mwaa.aws import AwsClients, expect_bucket_owner
from deploy.mwaa.buckets import check_bucket, ensure_bucket, principal_patterns
from deploy.mwaa.config import DeployConfig, DeployError
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
from deploy.mwaa.secrets import Prompt, SecretChange, plan_connection_secrets
from deploy.mwaa.sync import sync_dag_folder, sync_versioned_object


@dataclass(frozen=True)
class Inputs:
    """What apply read and checked before writing anything."""

    account: str
    caller_arn: str
    dags: list[Artifact]
    plugins: Artifact
    requirements_txt: Artifact
    record: Artifact
    existing: dict[str, Any] | None
    role: dict[str, Any] | None
    bucket_exists: dict[str, bool]
    secrets: list[SecretChange]


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
    inputs = _check_inputs(config, clients, env, prompt, plan)
    role_arn, versions = _provision(config, clients, plan, inputs)
    desired = desired_environment(config, role_arn, versions, inputs.account)
    role_is_new = any(
        c.resource.startswith("iam role") and c.action.startswith("create") for c in plan.changes
    )
    settled = ensure_environment(clients.mwaa, inputs.existing, desired, plan, waiter, role_is_new)
    if settled is not None:
        # MWAA installs requirements.txt on every create and update, and is AVAILABLE even
        # when pip failed: what pip wrote decides
        pip_failed, line = requirements_log.describe(clients.logs, settled)
        if pip_failed:
            raise DeployError(f"{config.mwaa_name} is AVAILABLE but {line}")
        plan.say(line)
    return plan


def _check_inputs(
    config: DeployConfig,
    clients: AwsClients,
    env: Mapping[str, str],
    prompt: Prompt | None,
    plan: Plan,
) -> Inputs:
    root = config.project_root
    caller = clients.sts.get_caller_identity()
    account = str(caller["Account"])
    dag_settings = check_dag_options(airflow_options(config, account), root)
    check_dead_man(config, int(dag_settings.load_every_minutes))
    dags = dag_artifacts(root)
    plugins, requirements_txt = plugins_zip(root), requirements(root)
    record = _committed_record(config, plan)
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
    return Inputs(
        account=account,
        caller_arn=str(caller["Arn"]),
        dags=dags,
        plugins=plugins,
        requirements_txt=requirements_txt,
        record=record,
        existing=existing,
        role=role,
        bucket_exists=bucket_exists,
        secrets=secrets,
    )


def _committed_record(config: DeployConfig, plan: Plan) -> Artifact:
    """deployed-commit.txt; refused when tracked files have uncommitted changes, unless the
    deployer asked to ship the working tree (--allow-dirty)."""
    root = config.project_root
    for name in untracked_files(root):
        plan.say(f"note: {name} is not tracked by git, so it is not shipped")
    dirty = uncommitted_changes(root)
    if dirty and not config.allow_dirty:
        raise DeployError(
            f"{dirty[0]} has uncommitted changes ({len(dirty)} file(s) in all): commit them, "
            "or pass --allow-dirty to ship the working tree as it is"
        )
    for name in dirty:
        plan.say(f"note: {name} ships with uncommitted changes (--allow-dirty)")
    return commit_record(root, bool(dirty))


def _provision(
    config: DeployConfig, clients: AwsClients, plan: Plan, inputs: Inputs
) -> tuple[str, ArtifactVersions]:
    """Secrets, buckets, role, monitoring and the artifacts, each made to match."""
    for secret in inputs.secrets:
        if secret.call is None:
            plan.would(secret.resource, secret.action)
        else:
            plan.change(secret.resource, secret.action, secret.call, **secret.kwargs)
    # the raw extracts hold personal data: only the pipeline, the deployer and break-glass
    data_readers = [
        f"arn:aws:iam::{inputs.account}:role/{config.role_name}",
        f"arn:aws:iam::{inputs.account}:role/{config.break_glass_role_name}",
        *principal_patterns(inputs.caller_arn),
    ]
    for bucket in config.buckets:
        readers = None if bucket == config.source_bucket else data_readers
        ensure_bucket(clients.s3, bucket, config, plan, inputs.bucket_exists[bucket], readers)
    role_arn = ensure_execution_role(clients.iam, config, inputs.account, plan, inputs.role)
    ensure_monitoring(clients.cloudwatch, clients.sns, clients.kms, config, inputs.account, plan)
    source = config.source_bucket
    sync_dag_folder(clients.s3, source, inputs.dags, plan)
    versions = ArtifactVersions(
        plugins=sync_versioned_object(clients.s3, source, inputs.plugins, plan),
        requirements=sync_versioned_object(clients.s3, source, inputs.requirements_txt, plan),
    )
    sync_versioned_object(clients.s3, source, inputs.record, plan)
    return role_arn, versions
