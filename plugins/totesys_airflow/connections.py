"""Build the pipeline's Settings from Airflow connections, at task run time only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.sdk import Connection

from etl.config import Secret, Settings
from etl.load.names import WarehouseNames
from etl.tables import ALL_TABLES, select_tables
from totesys_airflow.config import DagConfig


def postgres_url(conn_id: str) -> Secret:
    """A postgresql:// URL from a Postgres connection (host, port, login, password, schema)."""
    conn = Connection.get(conn_id)
    user = quote(conn.login or "", safe="")
    password = f":{quote(conn.password, safe='')}" if conn.password else ""
    host = conn.host or "localhost"
    port = f":{conn.port}" if conn.port else ""
    return Secret(f"postgresql://{user}{password}@{host}{port}/{quote(conn.schema or '', safe='')}")


def pipeline_settings(config: DagConfig, tables: list[str] | None = None) -> Settings:
    return Settings(
        totesys_db_url=postgres_url("totesys_db"),
        warehouse_db_url=postgres_url("warehouse_db"),
        ingestion_bucket=config.ingestion_bucket,
        processed_bucket=config.processed_bucket,
        overlap=timedelta(seconds=config.overlap_seconds),
        tables=select_tables(tables) if tables else ALL_TABLES,
        warehouse_schema=config.warehouse_schema,
        warehouse_names=WarehouseNames.parse(config.warehouse_name_map),
    )


def s3_client() -> Any:
    """boto3 S3 client from the `aws_default` connection (its endpoint_url extra points at
    moto or MinIO locally; on MWAA it is the execution role)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id="aws_default").get_conn()
