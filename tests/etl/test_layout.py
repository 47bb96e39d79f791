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


def test_each_attempt_writes_its_own_data_keys_and_both_forms_parse() -> None:
    batch = "20261128T070507123456Z"
    first, second = (layout.extract_key("payment", batch, attempt) for attempt in (41, 42))
    assert first != second and first.endswith("/payment-20261128T070507123456Z-a41.csv")
    for key in (first, second, layout.extract_key("payment", batch)):
        assert layout.batch_id_of_data_key("payment", key, "csv") == batch
    for stranger in (
        "payment/year=2026/month=11/day=28/payment-20261128T070507123456Z-ax.csv",
        "payment/year=2026/month=11/day=28/payment-20261128T070507123456Z.parquet",
        "payment/year=2026/month=11/day=27/payment-20261128T070507123456Z-a1.csv",
        "payment/notes.csv",
    ):
        assert layout.batch_id_of_data_key("payment", stranger, "csv") is None
