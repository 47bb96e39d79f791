"""The freshness check measures waits in UTC whatever zone totesys writes its clock in."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from etl.config import Settings
from etl.errors import ConfigError
from etl.load.loader import init_warehouse
from etl.ops.cycle import run_cycle
from etl.ops.freshness import as_utc, check

LONDON = ZoneInfo("Europe/London")
THRESHOLD = timedelta(minutes=30)


def test_london_local_time_is_read_across_both_clock_changes() -> None:
    # spring: 01:00 GMT becomes 02:00 BST; 02:30 local is 01:30 UTC
    assert as_utc(datetime(2026, 3, 29, 2, 30), LONDON) == datetime(2026, 3, 29, 1, 30)
    assert as_utc(datetime(2026, 3, 29, 0, 30), LONDON) == datetime(2026, 3, 29, 0, 30)
    # autumn: 02:00 BST becomes 01:00 GMT; 01:30 happens twice, the later (GMT) is taken
    assert as_utc(datetime(2026, 10, 25, 1, 30), LONDON) == datetime(2026, 10, 25, 1, 30)
    assert as_utc(datetime(2026, 10, 25, 0, 30), LONDON) == datetime(2026, 10, 24, 23, 30)
    assert as_utc(datetime(2026, 7, 1, 12, 0), ZoneInfo("UTC")) == datetime(2026, 7, 1, 12, 0)


def a_late_order(settings: Settings, local_time: datetime) -> None:
    """A new order the warehouse does not hold yet, stamped by a source on local time."""
    with psycopg.connect(settings.totesys_db_url.reveal()) as conn:  # type: ignore[union-attr]
        conn.execute(
            "INSERT INTO sales_order (sales_order_id, created_at, last_updated, design_id, "
            "staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date,"
            " agreed_payment_date, agreed_delivery_location_id) SELECT max(sales_order_id) + 1,"
            " %(t)s, %(t)s, min(design_id), min(staff_id), min(counterparty_id), 10, 2.50,"
            " min(currency_id), '2026-12-01', '2026-12-01', min(agreed_delivery_location_id)"
            " FROM sales_order",
            {"t": local_time},
        )


@pytest.mark.parametrize(
    ("local_change", "now_utc", "waited"),
    [
        # just after the spring change: read as UTC it would look 20 minutes in the future
        (datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 29, 2, 10), timedelta(minutes=40)),
        # just before the autumn change, still BST: read as UTC, 40 minutes in the future
        (datetime(2026, 10, 25, 0, 50), datetime(2026, 10, 25, 0, 10), timedelta(minutes=20)),
    ],
)
def test_the_wait_is_measured_in_utc_for_a_source_on_london_time(
    settings: Settings, s3: Any, local_change: datetime, now_utc: datetime, waited: timedelta
) -> None:
    init_warehouse(settings)
    run_cycle(settings, s3)
    a_late_order(settings, local_change)
    london = replace(settings, source_timezone="Europe/London")

    result = check(london, now_utc, THRESHOLD)

    assert result.oldest_missing == local_change
    assert result.waited == waited
    assert result.breached == (waited > THRESHOLD)
    naive = check(settings, now_utc, THRESHOLD)  # the same source wrongly read as UTC
    assert naive.waited != waited


def test_an_unknown_zone_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="SOURCE_TIMEZONE 'Europe/Londn' is not an IANA"):
        Settings.from_env({"SOURCE_TIMEZONE": "Europe/Londn"})
