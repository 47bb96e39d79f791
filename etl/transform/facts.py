"""The three facts: one row per source-row version, timestamps split into date and time,
agreed dates parsed from their 'YYYY-MM-DD' text (by conform, which sets aside a row whose
text is no date), renames as in the ERD."""

from __future__ import annotations

import pyarrow as pa

from etl.transform.columns import conform, date_part, time_part
from etl.transform.rejects import RejectLog
from etl.warehouse import WAREHOUSE_TABLES


def _with_times(rows: pa.Table) -> dict[str, pa.ChunkedArray]:
    columns = {name: rows.column(name) for name in rows.column_names}
    columns["created_date"] = date_part(rows.column("created_at"))
    columns["created_time"] = time_part(rows.column("created_at"))
    columns["last_updated_date"] = date_part(rows.column("last_updated"))
    columns["last_updated_time"] = time_part(rows.column("last_updated"))
    return columns


def fact_sales_order(sales_order: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per (sales_order_id, last_updated). staff_id becomes sales_staff_id."""
    columns = _with_times(sales_order)
    columns["sales_staff_id"] = sales_order.column("staff_id")
    return conform(columns, WAREHOUSE_TABLES["fact_sales_order"], rejects)


def fact_purchase_orders(purchase_order: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per (purchase_order_id, last_updated)."""
    return conform(_with_times(purchase_order), WAREHOUSE_TABLES["fact_purchase_orders"], rejects)


def fact_payment(payment: pa.Table, rejects: RejectLog | None = None) -> pa.Table:
    """Grain: one row per (payment_id, last_updated): a payment usually arrives unpaid, then
    paid. The two account numbers are dropped."""
    return conform(_with_times(payment), WAREHOUSE_TABLES["fact_payment"], rejects)
