"""The pipeline's data as Airflow Assets: what ingest, transform and load update.

They make the flow visible in the UI's Assets view and let another team schedule a DAG on
"warehouse updated" (`schedule=Asset.ref(name="totesys_warehouse")`, or the URI below). A
batch is complete when its manifest exists, so the buckets' assets are their manifest
prefixes; the warehouse has no S3 location, so it is an `x-` URI of our own (Airflow leaves
those unchecked)."""

from __future__ import annotations

from airflow.sdk import Asset

from totesys_airflow.config import DagConfig

GROUP = "totesys"


def ingestion_batches(config: DagConfig) -> Asset:
    return Asset(name="totesys_ingestion", uri=f"s3://{config.ingestion_bucket}/_manifests",
                 group=GROUP)  # fmt: skip


def processed_batches(config: DagConfig) -> Asset:
    return Asset(name="totesys_processed", uri=f"s3://{config.processed_bucket}/_manifests",
                 group=GROUP)  # fmt: skip


def warehouse(config: DagConfig) -> Asset:
    return Asset(name="totesys_warehouse", uri=f"x-totesys://warehouse/{config.warehouse_schema}",
                 group=GROUP)  # fmt: skip
