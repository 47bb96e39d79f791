"""The pipeline's connections in Secrets Manager (`airflow/connections/<id>`), where MWAA's
secrets backend finds them.

Values come from the environment or a hidden prompt and go straight into the API call: they
are never printed, logged or written to disk, and a secret is rewritten only when its value
differs from what is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from botocore.exceptions import ClientError
from psycopg.conninfo import conninfo_to_dict

from deploy.mwaa.aws import is_not_found
from deploy.mwaa.config import DeployConfig, DeployError
from deploy.mwaa.plan import Plan

SES_SMTP_PORT = 587  # STARTTLS
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


def secret_name(config: DeployConfig, conn_id: str) -> str:
    return f"{config.secrets_prefix}/{conn_id}"


def postgres_connection(env_name: str, url: str) -> dict[str, Any]:
    """An Airflow connection (JSON form) from a postgresql:// URL; TLS required on AWS."""
    try:
        parts = conninfo_to_dict(url)
    except (psycopg.Error, ValueError):
        raise DeployError(f"{env_name} is not a postgresql:// URL") from None
    if not parts.get("host") or not parts.get("dbname") or not parts.get("user"):
        raise DeployError(f"{env_name} needs a user, a host and a database name")
    return {
        "conn_type": "postgres",
        "host": parts["host"],
        "port": int(parts.get("port") or 5432),
        "login": parts["user"],
        "password": parts.get("password", ""),
        "schema": parts["dbname"],
        "extra": {"sslmode": parts.get("sslmode", "require")},
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
    config: DeployConfig, source: SecretSource, values: Mapping[str, str]
) -> dict[str, Any]:
    if source.conn_id == "smtp_default":
        return smtp_connection(config, values["SES_SMTP_USERNAME"], values["SES_SMTP_PASSWORD"])
    (env_name,) = source.env_names
    return postgres_connection(env_name, values[env_name])


def ensure_connection_secrets(
    secretsmanager: Any,
    config: DeployConfig,
    env: Mapping[str, str],
    prompt: Prompt | None,
    plan: Plan,
) -> None:
    """Create missing secrets and update changed ones. A secret that exists and has no new
    value given is left alone; one that is missing needs its values from env or prompt."""
    for source in SOURCES:
        name = secret_name(config, source.conn_id)
        stored = _stored(secretsmanager, name)
        values = {key: env[key] for key in source.env_names if env.get(key, "").strip()}
        if len(values) < len(source.env_names) and stored is None and prompt and not plan.dry_run:
            values = {
                key: values.get(key) or prompt(f"{key} ({source.hint}): ")
                for key in source.env_names
            }
        if len(values) < len(source.env_names):
            if stored is not None:
                continue  # keep what is stored
            if plan.dry_run:
                plan.would(f"secret {name}", "create (values from env or prompt)")
                continue
            raise DeployError(
                f"secret {name} does not exist: set {' and '.join(source.env_names)} "
                "or run in a terminal to be prompted"
            )
        wanted = build_connection(config, source, values)
        body = json.dumps(wanted, sort_keys=True)
        if stored is None:
            plan.change(
                f"secret {name}",
                "create",
                secretsmanager.create_secret,
                Name=name,
                SecretString=body,
                Description=f"Airflow connection {source.conn_id} for {config.name_stem}",
                Tags=[{"Key": "project", "Value": config.prefix}],
            )
        elif stored != wanted:
            plan.change(
                f"secret {name}",
                "update (value changed)",
                secretsmanager.put_secret_value,
                SecretId=name,
                SecretString=body,
            )


def _stored(secretsmanager: Any, name: str) -> dict[str, Any] | None:
    """The stored connection, or None when there is no secret (or no readable value)."""
    try:
        text = secretsmanager.get_secret_value(SecretId=name).get("SecretString", "")
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    try:
        stored = json.loads(text)
    except json.JSONDecodeError:
        return {}  # a URI-form or hand-edited secret: differs from ours, so it is rewritten
    return stored if isinstance(stored, dict) else {}
