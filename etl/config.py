"""One typed settings object, filled at the edge: from the environment by the CLI, from
Airflow connections by the DAG. Nothing below reads `os.environ`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.conninfo import conninfo_to_dict

from etl.errors import ConfigError
from etl.names import IDENTIFIER, WarehouseNames
from etl.tables import ALL_TABLES, select_tables

MALFORMED = "<a URL that does not parse>"
DEFAULT_OVERLAP = timedelta(minutes=15)
# doctor calls an unreferenced object or an open upload abandoned only past this age: three
# times the DAG's 20-minute task timeout, so no live stage can still be producing it
DEFAULT_DOCTOR_MIN_AGE = timedelta(hours=1)
DEFAULT_REGION = "eu-west-2"
METRICS_SINKS = ("none", "local", "cloudwatch")
DEFAULT_LEASE_WAIT = timedelta(seconds=60)
DEFAULT_LEASE_TIMEOUT = timedelta(seconds=30)
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


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about where things are."""

    totesys_db_url: Secret | None = None  # postgresql:// URL of the source database
    warehouse_db_url: Secret | None = None  # postgresql:// URL of the warehouse
    ingestion_bucket: str = ""  # S3 bucket for CSV extracts, manifests and watermarks
    processed_bucket: str = ""  # S3 bucket for the parquet star schema
    aws_endpoint_url: str | None = None  # moto/MinIO locally; None means AWS itself
    aws_region: str = DEFAULT_REGION
    overlap: timedelta = DEFAULT_OVERLAP  # how far behind the watermark each extract re-reads
    doctor_min_age: timedelta = DEFAULT_DOCTOR_MIN_AGE  # younger debris may be a live writer's
    tables: tuple[str, ...] = ALL_TABLES  # subset of the allow-list to extract
    warehouse_schema: str = "public"  # schema of the warehouse tables
    warehouse_names: WarehouseNames = field(
        default_factory=WarehouseNames
    )  # prepared-warehouse names
    source_timezone: str = "UTC"  # the zone of totesys's naive timestamps (IANA name)
    metrics_sink: str = "none"  # none | local (JSON lines in metrics_file) | cloudwatch
    metrics_file: str = ""  # where the local sink appends
    environment: str = "local"  # the Environment dimension of every metric
    metrics_namespace: str = "Totesys/Pipeline"  # CloudWatch namespace (one per MWAA environment)
    expected_bucket_owner: str = ""  # AWS account that must own the buckets; empty: not checked
    # how long a second process of a stage waits for the stage's lease before it gives up
    lease_wait: timedelta = DEFAULT_LEASE_WAIT
    # how long a holder that stopped answering (killed, paused, cut off) keeps its lease
    lease_timeout: timedelta = DEFAULT_LEASE_TIMEOUT
    # a row that cannot become a warehouse row: set_aside (kept in the rejects area, the
    # rest flows on) or fail (the batch stops until the source row is corrected)
    bad_row_policy: str = SET_ASIDE

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
        if self.metrics_sink not in METRICS_SINKS:
            raise ConfigError(
                f"METRICS_SINK {self.metrics_sink!r} is not one of {', '.join(METRICS_SINKS)}"
            )
        if self.bad_row_policy not in BAD_ROW_POLICIES:
            raise ConfigError(
                f"BAD_ROW_POLICY {self.bad_row_policy!r} is not one of {', '.join(BAD_ROW_POLICIES)}"
            )
        if self.metrics_sink == "local" and not self.metrics_file:
            raise ConfigError("METRICS_SINK=local needs METRICS_FILE, the file to append to")

    @property
    def source_zone(self) -> ZoneInfo:
        return ZoneInfo(self.source_timezone)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def secret(name: str) -> Secret | None:
            value = env.get(name, "").strip()
            return Secret(value) if value else None

        try:
            overlap = timedelta(
                seconds=float(env.get("INGEST_OVERLAP_SECONDS", DEFAULT_OVERLAP.total_seconds()))
            )
        except ValueError as error:
            raise ConfigError(
                f"INGEST_OVERLAP_SECONDS must be a number of seconds: {error}"
            ) from None
        doctor_min_age = _seconds(env, "DOCTOR_MIN_AGE_SECONDS", DEFAULT_DOCTOR_MIN_AGE)
        if doctor_min_age < timedelta(0):
            raise ConfigError("DOCTOR_MIN_AGE_SECONDS must not be negative")
        lease_wait = _seconds(env, "LEASE_WAIT_SECONDS", DEFAULT_LEASE_WAIT)
        lease_timeout = _seconds(env, "LEASE_TIMEOUT_SECONDS", DEFAULT_LEASE_TIMEOUT)
        tables = env.get("TOTESYS_TABLES", "")
        schema = env.get("WAREHOUSE_SCHEMA", "").strip() or "public"
        return cls(
            totesys_db_url=secret("TOTESYS_DB_URL"),
            warehouse_db_url=secret("WAREHOUSE_DB_URL"),
            ingestion_bucket=env.get("INGESTION_BUCKET", "").strip(),
            processed_bucket=env.get("PROCESSED_BUCKET", "").strip(),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL", "").strip() or None,
            aws_region=env.get("AWS_DEFAULT_REGION", "").strip() or DEFAULT_REGION,
            overlap=overlap,
            doctor_min_age=doctor_min_age,
            tables=select_tables(tables.split(",")) if tables.strip() else ALL_TABLES,
            warehouse_schema=schema,
            warehouse_names=WarehouseNames.parse(env.get("WAREHOUSE_NAME_MAP", "")),
            source_timezone=env.get("SOURCE_TIMEZONE", "").strip() or "UTC",
            metrics_sink=env.get("METRICS_SINK", "").strip() or "none",
            metrics_file=env.get("METRICS_FILE", "").strip(),
            environment=env.get("PIPELINE_ENVIRONMENT", "").strip() or "local",
            metrics_namespace=env.get("METRICS_NAMESPACE", "").strip() or "Totesys/Pipeline",
            expected_bucket_owner=env.get("EXPECTED_BUCKET_OWNER", "").strip(),
            lease_wait=lease_wait,
            lease_timeout=lease_timeout,
            bad_row_policy=env.get("BAD_ROW_POLICY", "").strip() or SET_ASIDE,
        )

    def require(self, *names: str) -> None:
        """Fail with one line naming every missing setting a command needs."""
        env_names = {
            "totesys_db_url": "TOTESYS_DB_URL",
            "warehouse_db_url": "WAREHOUSE_DB_URL",
            "ingestion_bucket": "INGESTION_BUCKET",
            "processed_bucket": "PROCESSED_BUCKET",
        }
        missing = [env_names[name] for name in names if not getattr(self, name)]
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)}")
        if self.overlap < timedelta(0):
            raise ConfigError("the ingest overlap must not be negative")


def _seconds(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return timedelta(seconds=float(raw))
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
