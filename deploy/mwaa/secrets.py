"""The pipeline's connections in Secrets Manager (`airflow/<prefix>-<env>/connections/<id>`
by default), where MWAA's secrets backend finds them.

Each environment has its own prefix, and each secret carries two tags: `project` (the
deployment's `--prefix`) and `mwaa-environment` (the MWAA environment, `<prefix>-<env>`). A
secret under this environment's prefix tagged for another project or environment (or not
tagged) is refused, whether or not new values were given, so one environment never writes,
or quietly runs on, another's databases.

Values come from the environment or a hidden prompt and go straight into the API call: they
are never printed, logged or written to disk, and a secret is rewritten only when its value
differs from what is stored. Every value is read and checked before the first write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.aws import is_not_found
from deploy.mwaa.config import PROJECT_TAG, DeployConfig, DeployError
from etl.config import url_parts
from etl.errors import ConfigError

SES_SMTP_PORT = 587  # STARTTLS
ENVIRONMENT_TAG = "mwaa-environment"
# libpq parameters a URL may carry into the connection's extras (connections.py passes them on)
KEPT_PARAMETERS = ("sslmode", "sslrootcert", "connect_timeout", "options")
URL_PARTS = frozenset({"host", "port", "user", "password", "dbname"})
TLS_MODES = ("require", "verify-ca", "verify-full")  # AWS: never without TLS
Prompt = Callable[[str], str]


@dataclass(frozen=True)
class SecretSource:
    conn_id: str
    env_names: tuple[str, ...]  # the values this connection is built from
    hint: str  # what to type at the prompt


SOURCES = (
    SecretSource("totesys_db", ("TOTESYS_DB_URL",), "postgresql://user:password@host:5432/totesys"),
    SecretSource(
        "warehouse_db", ("WAREHOUSE_DB_URL",), "postgresql://user:password@host:5432/warehouse"
    ),
    SecretSource(
        "smtp_default", ("SES_SMTP_USERNAME", "SES_SMTP_PASSWORD"), "SES SMTP credentials"
    ),
)


@dataclass(frozen=True)
class SecretChange:
    """One planned write, decided before any is made."""

    resource: str
    action: str
    call: Callable[..., Any] | None  # None: only a dry run can name it (values come later)
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def secret_name(config: DeployConfig, conn_id: str) -> str:
    return f"{config.connections_prefix}/{conn_id}"


def postgres_connection(env_name: str, url: str, dag_files: Collection[str] = ()) -> dict[str, Any]:
    """An Airflow connection (JSON form) from a postgresql:// URL, parsed by etl's rules.

    TLS is required (`sslmode` require, verify-ca or verify-full; require when absent);
    `sslrootcert`, `connect_timeout` and `options` are kept as extras. A relative
    `sslrootcert` is a file of the DAG folder (`dag_files`, relative to it), where
    connections.py finds it on MWAA. Messages name no part of the URL but parameter names."""
    try:
        parts = url_parts(url)
    except ConfigError as error:
        raise DeployError(f"{env_name}: {error}") from None
    unknown = sorted(set(parts) - URL_PARTS - set(KEPT_PARAMETERS))
    if unknown:
        raise DeployError(
            f"{env_name}: parameter(s) {', '.join(unknown)} are not kept in the connection; "
            f"only {', '.join(KEPT_PARAMETERS)} are"
        )
    if not parts.get("host") or not parts.get("dbname") or not parts.get("user"):
        raise DeployError(f"{env_name} needs a user, a host and a database name")
    if "," in parts["host"]:
        raise DeployError(f"{env_name}: name one host; the connection holds one")
    port = parts.get("port") or "5432"
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        # "5432,5433" (a multi-host URL's ports) or 99999: the connection holds one port
        raise DeployError(f"{env_name}: the port must be one number from 1 to 65535")
    extra = {key: parts[key] for key in KEPT_PARAMETERS if parts.get(key)}
    extra.setdefault("sslmode", "require")
    if extra["sslmode"] not in TLS_MODES:
        raise DeployError(f"{env_name}: sslmode must be one of {', '.join(TLS_MODES)} on AWS")
    root = extra.get("sslrootcert", "")
    if extra["sslmode"] != "require" and not root:
        raise DeployError(
            f"{env_name}: sslmode={extra['sslmode']} needs sslrootcert=<CA bundle in dags/>, "
            "e.g. sslrootcert=certs/global-bundle.pem"
        )
    if root and root != "system" and not root.startswith("/") and root not in dag_files:
        raise DeployError(
            f"{env_name}: sslrootcert {root} is not a tracked file of the DAG folder (dags/{root})"
        )
    timeout = extra.get("connect_timeout", "")
    if timeout and not (timeout.isdigit() and int(timeout) > 0):
        raise DeployError(f"{env_name}: connect_timeout must be a whole number of seconds")
    return {
        "conn_type": "postgres",
        "host": parts["host"],
        "port": int(port),
        "login": parts["user"],
        "password": parts.get("password", ""),
        "schema": parts["dbname"],
        "extra": extra,
    }


def smtp_connection(config: DeployConfig, username: str, password: str) -> dict[str, Any]:
    """Amazon SES's SMTP interface on 587 with STARTTLS."""
    if not username or not password:
        raise DeployError("SES_SMTP_USERNAME and SES_SMTP_PASSWORD must both be set")
    return {
        "conn_type": "smtp",
        "host": config.ses_smtp_host,
        "port": SES_SMTP_PORT,
        "login": username,
        "password": password,
        "extra": {"disable_ssl": True, "disable_tls": False, "from_email": config.alert_from},
    }


def build_connection(
    config: DeployConfig,
    source: SecretSource,
    values: Mapping[str, str],
    dag_files: Collection[str] = (),
) -> dict[str, Any]:
    if source.conn_id == "smtp_default":
        return smtp_connection(config, values["SES_SMTP_USERNAME"], values["SES_SMTP_PASSWORD"])
    (env_name,) = source.env_names
    return postgres_connection(env_name, values[env_name], dag_files)


def plan_connection_secrets(
    secretsmanager: Any,
    config: DeployConfig,
    env: Mapping[str, str],
    prompt: Prompt | None,
    dry_run: bool,
    dag_files: Collection[str] = (),
) -> list[SecretChange]:
    """Every secret's write, decided (values read, prompted for and checked, ownership
    checked) before any is made. A secret that exists and has no new value given is left
    alone; one that is missing needs its values from env or prompt."""
    changes: list[SecretChange] = []
    for source in SOURCES:
        name = secret_name(config, source.conn_id)
        stored = _stored(secretsmanager, name, owner_tags(config))
        values = {key: env[key] for key in source.env_names if env.get(key, "").strip()}
        if len(values) < len(source.env_names) and stored is None and prompt and not dry_run:
            values = {
                key: values.get(key) or prompt(f"{key} ({source.hint}): ")
                for key in source.env_names
            }
        if len(values) < len(source.env_names):
            if stored is not None:
                continue  # keep what is stored
            if dry_run:
                changes.append(
                    SecretChange(f"secret {name}", "create (values from env or prompt)", None)
                )
                continue
            raise DeployError(
                f"secret {name} does not exist: set {' and '.join(source.env_names)} "
                "or run in a terminal to be prompted"
            )
        wanted = build_connection(config, source, values, dag_files)
        body = json.dumps(wanted, sort_keys=True)
        if stored is None:
            tags = [{"Key": key, "Value": value} for key, value in owner_tags(config).items()]
            changes.append(SecretChange(
                f"secret {name}", "create", secretsmanager.create_secret,
                {"Name": name, "SecretString": body, "Tags": tags,
                 "Description": f"Airflow connection {source.conn_id} for {config.name_stem}"},
            ))  # fmt: skip
        elif stored != wanted:
            changes.append(SecretChange(
                f"secret {name}", "update (value changed)", secretsmanager.put_secret_value,
                {"SecretId": name, "SecretString": body},
            ))  # fmt: skip
    return changes


def owner_tags(config: DeployConfig) -> dict[str, str]:
    """The tags that say whose a secret is; the execution role may read only secrets with
    both (role.py)."""
    return {PROJECT_TAG: config.prefix, ENVIRONMENT_TAG: config.mwaa_name}


def _stored(secretsmanager: Any, name: str, owner: Mapping[str, str]) -> dict[str, Any] | None:
    """The stored connection, or None when there is no secret; refused when the secret is
    not tagged as this project's and this environment's."""
    try:
        described = secretsmanager.describe_secret(SecretId=name)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    tags = {tag.get("Key"): tag.get("Value") for tag in described.get("Tags", [])}
    for tag, kind in ((PROJECT_TAG, "project"), (ENVIRONMENT_TAG, "environment")):
        wanted, found = owner[tag], tags.get(tag)
        if found != wanted:
            whose = f"{kind} {found!r}" if found else f"no {kind} (no {tag} tag)"
            raise DeployError(
                f"secret {name} belongs to {whose}, not {wanted!r}: give each {kind} its own "
                f"--secrets-prefix, or tag the secret {tag}={wanted} if it is this {kind}'s"
            )
    try:
        text = secretsmanager.get_secret_value(SecretId=name).get("SecretString", "")
    except ClientError as error:
        if is_not_found(error):  # described but no value yet
            return {}
        raise
    try:
        stored = json.loads(text)
    except json.JSONDecodeError:
        return {}  # a URI-form or hand-edited secret: differs from ours, so it is rewritten
    return stored if isinstance(stored, dict) else {}
