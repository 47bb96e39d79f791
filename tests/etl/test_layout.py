"""Object keys follow the documented Hive-style layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from etl import layout


def test_batch_id_is_utc_and_sortable() -> None:
    local = datetime(2026, 11, 28, 9, 5, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert layout.batch_id_for(local) == "20261128T070507123456Z"
    assert layout.batch_ts_of("20261128T070507123456Z") == local.astimezone(UTC)


def test_naive_batch_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        layout.batch_id_for(datetime(2026, 11, 28))


def test_extract_and_manifest_keys() -> None:
    batch = "20261128T070507123456Z"
    assert layout.extract_key("sales_order", batch) == (
        "sales_order/year=2026/month=11/day=28/sales_order-20261128T070507123456Z.csv"
    )
    assert layout.manifest_key(batch) == "_manifests/20261128T070507123456Z.json"
    assert layout.batch_id_of_manifest(layout.manifest_key(batch)) == batch
