"""Metrics reach CloudWatch (a moto server) and the local file, and never fail the pipeline."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devstack.processes import free_port
from devstack.stack import REGION, StackEndpoints
from etl.config import Settings
from etl.load.loader import init_warehouse
from etl.ops import metrics
from etl.ops.cycle import run_cycle
from etl.ops.metrics import CloudWatchMetrics, JsonLinesMetrics, Metric, read_local
from etl.ops.monitoring import monitored_load
from tests.etl.test_main import env_for, run_etl


def cloudwatch(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(**config),
    )


def test_cloudwatch_receives_each_metric_with_its_dimensions(stack: StackEndpoints) -> None:
    client = cloudwatch(stack.aws_endpoint_url)
    sink = CloudWatchMetrics(client, "test-env", namespace="Totesys/Test")
    many = [Metric("RowsExtracted", float(i), "Count", "ingest", f"t{i}") for i in range(200)]

    sink.send([*many, metrics.warehouse_lag(timedelta(minutes=3))])

    listed = client.get_paginator("list_metrics").paginate(Namespace="Totesys/Test")
    names = [(m["MetricName"], {d["Name"]: d["Value"] for d in m["Dimensions"]})
             for page in listed for m in page["Metrics"]]  # fmt: skip
    assert len([n for n, _ in names if n == "RowsExtracted"]) == 200  # sent in batches
    assert ("WarehouseLagSeconds", {"Environment": "test-env", "Stage": "freshness"}) in names
    stats = client.get_metric_statistics(
        Namespace="Totesys/Test",
        MetricName="WarehouseLagSeconds",
        Dimensions=[
            {"Name": "Environment", "Value": "test-env"},
            {"Name": "Stage", "Value": "freshness"},
        ],
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=60,
        Statistics=["Maximum"],
    )
    assert [p["Maximum"] for p in stats["Datapoints"]] == [180.0]


def test_a_cloudwatch_outage_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    down = cloudwatch(
        f"http://127.0.0.1:{free_port()}", retries={"max_attempts": 1}, connect_timeout=1
    )
    with caplog.at_level(logging.WARNING, logger="etl.ops.metrics"):
        CloudWatchMetrics(down, "test-env").send([metrics.stage_seconds("load", 1.5)])
    assert "metrics not sent to CloudWatch (1 dropped): EndpointConnectionError" in caplog.text


def test_a_cycle_records_what_each_stage_did(settings: Settings, s3: Any, tmp_path: Path) -> None:
    init_warehouse(settings)
    path = tmp_path / "metrics.jsonl"
    sink = JsonLinesMetrics(path, "local")

    cycle = run_cycle(settings, s3, sink=sink)

    records = read_local(path)
    extracted = {r["table"]: r["value"] for r in records if r["name"] == "RowsExtracted"}
    manifest_rows = {t: e["rows"] for t, e in cycle.ingested.manifest["tables"].items()}
    assert extracted == manifest_rows and sum(extracted.values()) > 0
    loaded = sum(r["value"] for r in records if r["name"] == "RowsLoaded")
    assert loaded == sum(
        c["inserted"] + c["updated"] for b in cycle.loaded for c in b.tables.values()
    )
    stages = {r["stage"] for r in records if r["name"] == "StageSeconds"}
    assert stages == {"ingest", "transform", "load"}
    pending = {r["stage"]: r["value"] for r in records if r["name"] == "BatchesPending"}
    assert pending == {"transform": 0, "load": 0}
    assert [r["value"] for r in records if r["name"] == "LoadSucceeded"] == [1]
    run_cycle(settings, s3, sink=sink)  # applies the next (empty) batch: still a sign of life
    assert [r["value"] for r in read_local(path) if r["name"] == "LoadSucceeded"] == [1, 1]
    assert monitored_load(settings, s3, sink) == []  # nothing to apply: no sign of life
    after = read_local(path)
    assert [r["value"] for r in after if r["name"] == "LoadSucceeded"] == [1, 1]
    assert [r["value"] for r in after if r["name"] == "BatchesPending"][-1] == 0
    (lag,) = [r for r in records if r["name"] == "WarehouseLagSeconds"]
    assert lag["value"] == 0  # everything the source holds was just loaded
    assert {r["environment"] for r in records} == {"local"}


def test_status_summarises_the_local_metrics(stack: StackEndpoints, settings: Settings,
                                             tmp_path: Path) -> None:  # fmt: skip
    init_warehouse(settings)
    env = {**env_for(stack, settings), "METRICS_SINK": "local",
           "METRICS_FILE": str(tmp_path / "m.jsonl")}  # fmt: skip
    assert run_etl(env, "run").returncode == 0

    status = run_etl(env, "status")

    assert status.returncode == 0, status.stderr
    assert "metrics (local):" in status.stdout
    assert "last ingest:" in status.stdout and "last load:" in status.stdout
    assert "warehouse lag: 0s" in status.stdout


def test_a_metrics_file_that_cannot_be_written_does_not_fail_the_stage(
    settings: Settings, s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    init_warehouse(settings)
    with caplog.at_level(logging.WARNING, logger="etl.ops.metrics"):
        cycle = run_cycle(settings, s3, sink=JsonLinesMetrics(blocked / "m.jsonl", "local"))
    assert cycle.loaded and "metrics not written" in caplog.text


def test_settings_refuse_an_unknown_sink_or_a_local_sink_without_a_file() -> None:
    with pytest.raises(Exception, match="METRICS_SINK 'statsd' is not one of"):
        replace(Settings(), metrics_sink="statsd")
    with pytest.raises(Exception, match="needs METRICS_FILE"):
        Settings.from_env({"METRICS_SINK": "local"})
