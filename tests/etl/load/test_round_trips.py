"""A load run's warehouse connections: the lease's, and one for everything else (the
ledger, the bookkeeping, every batch, the lag measured after it, the email of the rows it
set aside). Counted on the real services: psycopg.connect is wrapped to count the
connections it really opens, nothing is replaced."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from etl.config import Settings
from etl.ingest.run import ingest
from etl.load import too_large
from etl.load.apply import Connection
from etl.load.loader import init_warehouse
from etl.ops.metrics import JsonLinesMetrics, read_local
from etl.ops.monitoring import monitored_load
from etl.transform.batch import transform_pending
from etl.transform.rejects_area import BatchRejects
from tests.etl.load.test_loader import source
from tests.etl.load.test_too_large import longest_counterparty, narrow


def count_connections(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Connections opened from now on, per database name."""
    opened: Counter[str] = Counter()
    real_connect = psycopg.connect

    def counted(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        opened[conn.info.dbname] += 1
        return conn

    monkeypatch.setattr(psycopg, "connect", counted)
    return opened


def dbname(url: Any) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url.reveal())["dbname"])


def test_a_monitored_load_opens_two_warehouse_connections_and_emails_its_set_asides_once(
    settings: Settings, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = source(settings)
    _, length = longest_counterparty(url)
    init_warehouse(settings)
    narrow(settings, length - 1)  # so the load sets a row aside, and the email has work
    ingest(settings, s3)
    transform_pending(settings, s3)
    sink = JsonLinesMetrics(tmp_path / "metrics.jsonl", "local")
    emailed: list[str] = []

    def email(batch: BatchRejects) -> bool:
        emailed.append(batch.batch_id)
        return True

    def report(conn: Connection) -> None:
        assert not conn.closed and conn.info.dbname == dbname(settings.warehouse_db_url)
        too_large.report_unreported(conn, email)

    opened = count_connections(monkeypatch)
    loaded = monitored_load(settings, s3, sink, report)
    monkeypatch.undo()

    assert opened == {dbname(settings.warehouse_db_url): 2, dbname(settings.totesys_db_url): 1}
    assert [r.batch_id for r in loaded] == emailed and len(emailed) == 1
    lags = [r for r in read_local(tmp_path / "metrics.jsonl") if r["name"] == "WarehouseLagSeconds"]
    assert len(lags) == 1
    opened = count_connections(monkeypatch)
    # as the DAG's load task calls it: the freshness task after it measures the lag
    assert monitored_load(settings, s3, sink, report, measure_lag=False) == []
    monkeypatch.undo()

    assert opened == {dbname(settings.warehouse_db_url): 2}, "no lag scan of the source"
    assert len(emailed) == 1, "a batch's set-aside rows are emailed once"
    after = read_local(tmp_path / "metrics.jsonl")
    assert [r for r in after if r["name"] == "WarehouseLagSeconds"] == lags
    assert [r["value"] for r in after if r["name"] == "BatchesPending"] == [0, 0]
