"""Every setting of the pipeline declared once: name, type, default, environment variable,
Airflow option and description, as the fields of `Settings` (pydantic). The CLI fills it
from the environment (`Settings.from_env`), the DAG from its `[totesys]` options and its
Airflow connections (`Settings.from_text`); the DAG's and the deployer's configurations
take the settings they share from here (`shared`), and the docs' settings tables are
rendered from it (tests/docs/settings_tables.py). Nothing below reads `os.environ`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from etl.errors import ConfigError
from etl.names import IDENTIFIER, WarehouseNames
from etl.tables import ALL_TABLES, select_tables

MALFORMED = "<a URL that does not parse>"
DEFAULT_REGION = "eu-west-2"
METRICS_SINKS = ("none", "local", "cloudwatch")
# what transform does with a row that cannot become a warehouse row (etl.transform.rejects)
SET_ASIDE, FAIL = "set_aside", "fail"
BAD_ROW_POLICIES = (SET_ASIDE, FAIL)


@dataclass(frozen=True)
class Secret:
    """A value that never shows itself in repr, str, logs or tracebacks."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"


PERCENT_ENCODE_HINT = (
    "percent-encode '@' as %40, '/' as %2F, ':' as %3A and '%' as %25 in the user and password"
)


def url_parts(url: str) -> dict[str, str]:
    """The parts of a postgresql:// URL (or key=value conninfo), as libpq reads them.

    Refused, in one line that names no part of the URL, when it does not parse or when the
    split is ambiguous: an unencoded '@', '/' or ':' in a password moves the split, so a
    fragment of the password lands in the host, port or database name, where it would be
    shown in messages and logs (`u:abc@def@host` reads as host `def@host`)."""
    try:
        parts = {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except (psycopg.Error, ValueError):
        # the driver's message may quote a fragment of the URL
        raise ConfigError(f"the URL does not parse; {PERCENT_ENCODE_HINT}") from None
    host, port = parts.get("host", ""), parts.get("port", "")
    if (
        any(mark in parts.get("dbname", "") for mark in "@/:")
        or (("@" in host or "/" in host) and not host.startswith("/"))  # a socket dir is a path
        or "@" in parts.get("user", "")
        or (port and not port.replace(",", "").isdigit())
    ):
        raise ConfigError(f"the URL is ambiguous; {PERCENT_ENCODE_HINT}")
    return parts


def describe_url(url: Secret | None) -> str:
    """host:port/database of a connection URL, for messages: never the user or password,
    and nothing of a URL that does not parse or splits ambiguously (its text may hold the
    password)."""
    if url is None:
        return "<not configured>"
    try:
        parts = url_parts(url.reveal())
    except ConfigError:
        return MALFORMED
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{host}{port}/{parts.get('dbname', '')}"


def setting(
    default: Any = PydanticUndefined,
    *,
    description: str,
    env: str = "",
    option: str = "",
    choices: tuple[str, ...] = (),
    shown_default: str = "",
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """One setting's declaration, as a pydantic field: its default, what it means (the
    docs' tables show it), the environment variable the CLI reads it from, the `[totesys]`
    Airflow option the DAG reads it from (none: the DAG leaves it at its default or fills it
    itself), the values it may take and, where the value would not do, how the docs show
    the default."""
    extra: dict[str, Any] = {"env": env, "airflow_option": option, "choices": list(choices)}
    if shown_default:
        extra["shown_default"] = shown_default
    if default_factory is not None:
        return Field(
            default_factory=default_factory, description=description, json_schema_extra=extra
        )
    return Field(default, description=description, json_schema_extra=extra)


def declarations(owner: type) -> dict[str, FieldInfo]:
    """The declarations of a configuration class (a pydantic dataclass, see CONFIGURATION),
    by name, in the order they are declared."""
    found: dict[str, FieldInfo] = getattr(owner, "__pydantic_fields__")  # noqa: B009
    return found


def declared(owner: type, name: str) -> FieldInfo:
    return declarations(owner)[name]


def extra(info: FieldInfo, key: str) -> Any:
    """A key `setting` or `shared` put beside the declaration: env, airflow_option, ..."""
    values = info.json_schema_extra
    return values.get(key) if isinstance(values, dict) else None


# for every configuration class, made `@pydantic_dataclass(frozen=True, config=CONFIGURATION)`
# (immutable; `dataclasses.replace` validates again): a secret in a value that fails
# validation is not quoted back; Secret and WarehouseNames are our own types
CONFIGURATION = ConfigDict(arbitrary_types_allowed=True, hide_input_in_errors=True)


@pydantic_dataclass(frozen=True, config=CONFIGURATION)
class Settings:
    """Everything the pipeline needs to know about where things are and how to behave."""

    totesys_db_url: Secret | None = setting(
        None, env="TOTESYS_DB_URL", description="postgresql:// URL of the source database"
    )
    warehouse_db_url: Secret | None = setting(
        None,
        env="WAREHOUSE_DB_URL",
        description="postgresql:// URL of the warehouse (the stages' leases live there too)",
    )
    ingestion_bucket: str = setting(
        "",
        env="INGESTION_BUCKET",
        option="ingestion_bucket",
        description="S3 bucket for the CSV extracts, manifests and watermarks",
    )
    processed_bucket: str = setting(
        "",
        env="PROCESSED_BUCKET",
        option="processed_bucket",
        description="S3 bucket for the parquet star schema",
    )
    aws_endpoint_url: str | None = setting(
        None,
        env="AWS_ENDPOINT_URL",
        description="an S3-compatible server (moto, MinIO) locally; unset for AWS itself",
    )
    aws_region: str = setting(
        DEFAULT_REGION, env="AWS_DEFAULT_REGION", description="the AWS region of the buckets"
    )
    overlap: timedelta = setting(
        timedelta(minutes=15),
        env="INGEST_OVERLAP_SECONDS",
        option="overlap_seconds",
        description="seconds: how far behind its watermark each extract re-reads",
    )
    doctor_min_age: timedelta = setting(
        timedelta(hours=1),
        env="DOCTOR_MIN_AGE_SECONDS",
        description="seconds: `doctor` calls an unreferenced object or an open upload "
        "abandoned only past this age (three times the DAG's 20-minute task timeout, so no "
        "live stage can still be producing it)",
    )
    tables: tuple[str, ...] = setting(
        ALL_TABLES,
        env="TOTESYS_TABLES",
        shown_default="all 11 tables",
        description="comma-separated subset of the allow-list to extract; any other name "
        "is refused",
    )
    warehouse_schema: str = setting(
        "public",
        env="WAREHOUSE_SCHEMA",
        option="warehouse_schema",
        description="schema of the warehouse tables, a plain identifier; see "
        "[Load](architecture.md#load)",
    )
    warehouse_names: WarehouseNames = setting(
        default_factory=WarehouseNames,
        env="WAREHOUSE_NAME_MAP",
        option="warehouse_name_map",
        description="the names of a prepared warehouse that differ from ours, comma-separated "
        "`canonical=target` pairs; see [spec/README.md]"
        "(../spec/README.md#known-variants-of-the-warehouse-ddl)",
    )
    source_timezone: str = setting(
        "UTC",
        env="SOURCE_TIMEZONE",
        option="source_timezone",
        description="the IANA zone totesys writes its naive timestamps in (e.g. "
        "`Europe/London`): the lag is measured in UTC",
    )
    metrics_sink: str = setting(
        "none",
        env="METRICS_SINK",
        option="metrics_sink",
        choices=METRICS_SINKS,
        description="where stage and task metrics go: `cloudwatch` (set by the MWAA deployer), "
        "`local` (JSON lines in the metrics file) or `none`; see [operations.md]"
        "(operations.md#monitoring-from-outside-airflow-metrics-dashboard-alarms-reconcile)",
    )
    metrics_file: str = setting(
        "",
        env="METRICS_FILE",
        option="metrics_file",
        description="the file the `local` metrics sink appends to",
    )
    environment: str = setting(
        "local",
        env="PIPELINE_ENVIRONMENT",
        option="environment",
        description="the `Environment` dimension of every metric (the MWAA deployer sets "
        "the environment's name)",
    )
    metrics_namespace: str = setting(
        "Totesys/Pipeline",
        env="METRICS_NAMESPACE",
        option="metrics_namespace",
        description="the CloudWatch namespace; the MWAA deployer sets "
        "`Totesys/Pipeline/<prefix>-<env>`, the only one the execution role may publish into",
    )
    expected_bucket_owner: str = setting(
        "",
        env="EXPECTED_BUCKET_OWNER",
        option="expected_bucket_owner",
        description="the AWS account that must own the buckets (the MWAA deployer sets it): "
        "every S3 call then passes `ExpectedBucketOwner`, so S3 refuses a bucket of that "
        "name another account owns; empty: not checked",
    )
    lease_wait: timedelta = setting(
        timedelta(seconds=60),
        env="LEASE_WAIT_SECONDS",
        description="seconds: how long a second process of a stage waits for the stage's "
        "lease before it gives up",
    )
    lease_timeout: timedelta = setting(
        timedelta(seconds=30),
        env="LEASE_TIMEOUT_SECONDS",
        description="seconds: how long a holder that stopped answering (killed, paused, cut "
        "off) keeps its lease; also the longest a loader may spend inside one batch's "
        "transaction without a statement",
    )
    bad_row_policy: str = setting(
        SET_ASIDE,
        env="BAD_ROW_POLICY",
        option="bad_row_policy",
        choices=BAD_ROW_POLICIES,
        description="a source row that cannot become a warehouse row: `set_aside` (written "
        "to the rejects area, emailed, everything else flows) or `fail` (the batch fails, "
        "a hard stop)",
    )

    def __post_init__(self) -> None:
        # here, not in from_env: the DAG fills Settings from its own options
        if self.lease_wait < timedelta(0):
            raise ConfigError("LEASE_WAIT_SECONDS must not be negative")
        if self.lease_timeout < timedelta(seconds=1):
            raise ConfigError("LEASE_TIMEOUT_SECONDS must be at least 1 second")
        if not IDENTIFIER.match(self.warehouse_schema):
            raise ConfigError(
                f"WAREHOUSE_SCHEMA {self.warehouse_schema!r} is not a plain identifier"
            )
        try:
            ZoneInfo(self.source_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"SOURCE_TIMEZONE {self.source_timezone!r} is not an IANA time zone "
                "(e.g. UTC, Europe/London)"
            ) from None
        check_metrics_sink(self.metrics_sink, self.metrics_file)
        _check_choice(declared(Settings, "bad_row_policy"), self.bad_row_policy)

    @property
    def source_zone(self) -> ZoneInfo:
        return ZoneInfo(self.source_timezone)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Each setting from its environment variable; unset or blank: its default."""
        by_name = {name: extra(info, "env") for name, info in declarations(cls).items()}
        settings = cls.from_text({name: env.get(var, "") for name, var in by_name.items()})
        if settings.doctor_min_age < timedelta(0):
            raise ConfigError("DOCTOR_MIN_AGE_SECONDS must not be negative")
        return settings

    @classmethod
    def from_text(cls, texts: Mapping[str, str], **values: Any) -> Settings:
        """Settings from the text of some of them (the environment's, the DAG options'),
        each read by its type; blank: its default. `values`: settings given as they are."""
        read = {}
        for name, text in texts.items():
            info = declarations(cls)[name]
            if text.strip():
                read[name] = _read(info, text.strip())
        return cls(**{**read, **values})

    def require(self, *names: str) -> None:
        """Fail with one line naming every missing setting a command needs."""
        missing = [env_name(Settings, name) for name in names if not getattr(self, name)]
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)}")
        if self.overlap < timedelta(0):
            raise ConfigError("the ingest overlap must not be negative")


@pydantic_dataclass(frozen=True, config=CONFIGURATION)
class AlertSettings:
    """Who hears of a failure: the DAG emails them, the MWAA deployer subscribes them to
    the alarms' topic and lets SES send as the sender. Declared here, beside the pipeline's
    settings, so the DAG's and the deployer's configurations share one declaration."""

    alert_emails: tuple[str, ...] = setting(
        ("data-team@terrifictotes.com",),
        option="alert_emails",
        description="who is emailed about a failed task, a freshness breach or rows set "
        "aside, and on MWAA subscribed to the alarms' topic (comma-separated)",
    )
    alert_from: str = setting(
        "totesys-airflow@terrifictotes.com",
        option="alert_from",
        description="the sender of those emails",
    )


def env_name(owner: type, name: str) -> str:
    return str(extra(declared(owner, name), "env"))


def shared(owner: type, name: str, *, default: Any = MISSING, **more: str) -> Any:
    """A field of another configuration (the DAG's, the deployer's) that is the declared
    setting `owner.name`: its description and default come from that one declaration, the
    default in the form an Airflow option takes (seconds for a duration, the text of a
    name map). `default`: the other configuration's own default, where it differs; `more`:
    what that configuration adds to the declaration (the deployer's flag)."""
    info = declared(owner, name)
    if default is MISSING:
        default = option_form(info.get_default(call_default_factory=True))
    links = {"setting": name, "owner": owner.__name__, **more}
    return Field(
        default, description=info.description, json_schema_extra={**_extras(info), **links}
    )


def _extras(info: FieldInfo) -> dict[str, Any]:
    return dict(info.json_schema_extra) if isinstance(info.json_schema_extra, dict) else {}


def option_form(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, WarehouseNames):
        return ""  # the default map: no name differs
    return value


def check_metrics_sink(sink: str, file: str) -> None:
    """A metrics sink is one of METRICS_SINKS, and the local one has its file: checked by
    Settings, and by etl.ops.metrics.sink_for for the DAG's options (DagConfig reads them
    unchecked)."""
    _check_choice(declared(Settings, "metrics_sink"), sink)
    if sink == "local" and not file:
        raise ConfigError("METRICS_SINK=local needs METRICS_FILE, the file to append to")


def _check_choice(info: FieldInfo, value: str) -> None:
    choices = extra(info, "choices")
    if choices and value not in choices:
        raise ConfigError(f"{extra(info, 'env')} {value!r} is not one of {', '.join(choices)}")


def _read(info: FieldInfo, text: str) -> Any:
    """A setting's value from its (stripped, non-blank) text, by the setting's type."""
    kind = info.annotation
    if kind is timedelta:
        try:
            return timedelta(seconds=float(text))
        except (ValueError, OverflowError):  # 'abc', 'nan'; 'inf', '1e300'
            raise ConfigError(
                f"{extra(info, 'env')} must be a number of seconds, not {text!r}"
            ) from None
    if kind is WarehouseNames:
        return WarehouseNames.parse(text)
    if kind == tuple[str, ...]:  # the one list among the settings: the tables to extract
        return select_tables(text.split(","))
    if kind == Secret | None:
        return Secret(text)
    return text
