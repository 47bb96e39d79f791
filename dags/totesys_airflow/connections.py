"""Build the pipeline's Settings from Airflow connections, at task run time only."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from airflow.sdk import Connection

from etl.config import Secret, Settings
from etl.ops.metrics import MetricsSink, sink_for
from etl.tables import ALL_TABLES, select_tables
from totesys_airflow.config import DagConfig

DAG_FOLDER = Path(__file__).resolve().parents[1]


def postgres_url(conn_id: str) -> Secret:
    """A postgresql:// URL from a Postgres connection. Host and port go in the query string,
    so a socket directory or an IPv6 address works as the host; libpq extras such as
    sslmode are passed on, and a relative sslrootcert is a file of the DAG folder (where MWAA
    puts the DAG, wherever that is)."""
    conn = Connection.get(conn_id)
    user = quote(conn.login or "", safe="")
    password = f":{quote(conn.password, safe='')}" if conn.password else ""
    query = {"host": conn.host or "localhost"}
    if conn.port:
        query["port"] = str(conn.port)
    for key in ("sslmode", "sslrootcert", "connect_timeout", "options"):
        if key in conn.extra_dejson:
            query[key] = str(conn.extra_dejson[key])
    root = query.get("sslrootcert", "")
    if root and root != "system" and not Path(root).is_absolute():
        query["sslrootcert"] = str(DAG_FOLDER / root)  # a CA bundle shipped with the DAG
    return Secret(
        f"postgresql://{user}{password}@/{quote(conn.schema or '', safe='')}?{urlencode(query, quote_via=quote)}"
    )


def pipeline_settings(config: DagConfig, tables: list[str] | None = None) -> Settings:
    """The pipeline's settings: the DAG's `[totesys]` options that are pipeline settings,
    read and checked here, at task run time (a bad one fails the task, which emails), and
    the database URLs from the connections."""
    return Settings.from_text(
        config.pipeline_options(),
        totesys_db_url=postgres_url("totesys_db"),
        warehouse_db_url=postgres_url("warehouse_db"),
        tables=select_tables(tables) if tables else ALL_TABLES,
    )


def metrics_sink(config: DagConfig) -> MetricsSink:
    """Where task and stage metrics go; CloudWatch through the `aws_default` connection."""

    def cloudwatch() -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id="aws_default", client_type="cloudwatch").get_conn()

    return sink_for(config, cloudwatch)


def s3_client(config: DagConfig) -> Any:
    """boto3 S3 client from the `aws_default` connection (its endpoint_url extra points at
    moto or MinIO locally; on MWAA it is the execution role), passing the expected bucket
    owner on every call when `totesys.expected_bucket_owner` is set."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id="aws_default").get_conn()
