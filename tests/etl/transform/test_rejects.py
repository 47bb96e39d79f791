"""Rows set aside: each kind of bad value keeps its row out, names it, lets the rest flow;
a re-read of the same version is not set aside twice; a corrected version closes it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from etl.errors import DataError
from etl.transform import dimensions, facts
from etl.transform.rejects import FAIL, SET_ASIDE, RejectLog
from etl.transform.remodel import TransformState, remodel
from tests.etl.transform.frames import department, frame, payment, sales_order, staff

CREATED = datetime(2024, 11, 14, 9, 12, 10, 51000)


def rows_of(log: RejectLog) -> list[dict[str, object]]:
    return [
        {k: r[k] for k in ("table", "key_column", "key", "column", "value", "reason")}
        for r in log.found().to_pylist()
    ]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("agreed_delivery_date", "2024-02-30", "Failed to parse string: '2024-02-30'"),
        ("agreed_delivery_date", "", "Failed to parse string: ''"),
        ("agreed_payment_date", "soon", "Failed to parse string: 'soon'"),
        ("agreed_payment_date", "0000-01-01", "a date outside 0001-01-01..9999-12-31"),
    ],
)
def test_a_bad_text_date_sets_its_row_aside_and_keeps_the_others(
    column: str, value: str, reason: str
) -> None:
    log = RejectLog(SET_ASIDE, "B1")
    good, bad = sales_order(5, CREATED), {**sales_order(6, CREATED), column: value}
    out = facts.fact_sales_order(frame("sales_order", [good, bad]), log)
    assert out.column("sales_order_id").to_pylist() == [5]
    [found] = log.found().to_pylist()
    assert (found["table"], found["key_column"], found["key"]) == (
        "fact_sales_order", "sales_order_id", "6",
    )  # fmt: skip
    assert (found["column"], found["value"], found["last_updated"]) == (column, value, CREATED)
    assert found["reason"].startswith(reason) and found["batch_id"] == "B1"


def test_a_null_the_warehouse_forbids_sets_the_dimension_row_aside() -> None:
    log = RejectLog(SET_ASIDE, "B1")
    out = dimensions.dim_staff(
        frame("staff", [staff(1, 4), staff(2, 5)]),
        frame("department", [department(4, None), department(5, "Leeds")]),
        log,
    )
    assert out.column("staff_id").to_pylist() == [2]
    assert rows_of(log) == [{
        "table": "dim_staff", "key_column": "staff_id", "key": "1", "column": "location",
        "value": None, "reason": "NULL, but the warehouse requires a value",
    }]  # fmt: skip


def test_an_unknown_currency_and_a_missing_parent_are_set_aside() -> None:
    log = RejectLog(SET_ASIDE, "B1")
    currencies = [{"currency_id": i, "currency_code": c, "created_at": None, "last_updated": None}
                  for i, c in ((1, "GBP"), (4, "XYZ"))]  # fmt: skip
    out = dimensions.dim_currency(frame("currency", currencies), log)
    assert out.column("currency_id").to_pylist() == [1]
    dimensions.dim_staff(
        frame("staff", [staff(3, 9)]), frame("department", [department(4, "Leeds")]), log
    )
    assert [(r["table"], r["key"], r["column"], r["reason"]) for r in rows_of(log)] == [
        ("dim_currency", "4", "currency_code", "'XYZ' is not an ISO 4217 currency code"),
        ("dim_staff", "3", "department_id", "department_id 9 has no row in the department state"),
    ]


def test_a_number_too_large_for_its_column_is_set_aside() -> None:
    log = RejectLog(SET_ASIDE, "B1")
    huge = {**payment(2, CREATED, CREATED, True), "transaction_id": 2**40}
    out = facts.fact_payment(frame("payment", [payment(1, CREATED, CREATED, True), huge]), log)
    assert out.column("payment_id").to_pylist() == [1]
    [found] = rows_of(log)
    assert (found["column"], found["value"]) == ("transaction_id", str(2**40))
    assert "not in range" in str(found["reason"])


def test_the_fail_policy_stops_at_the_first_bad_row_naming_it() -> None:
    bad = {**sales_order(6, CREATED), "agreed_delivery_date": "2024-02-30"}
    with pytest.raises(
        DataError, match=r"agreed_delivery_date: .*'2024-02-30'.*\(sales_order_id 6\)"
    ):
        facts.fact_sales_order(frame("sales_order", [bad]), RejectLog(FAIL, "B1"))


def test_a_re_read_is_not_set_aside_twice_and_a_correction_closes_it() -> None:
    bad = {**sales_order(6, CREATED), "agreed_delivery_date": "2024-02-30"}
    first = RejectLog(SET_ASIDE, "B1")
    _, state = remodel({"sales_order": frame("sales_order", [bad])}, TransformState(), first)
    assert first.found().num_rows == 1 and state.rejected.num_rows == 1

    again = RejectLog(SET_ASIDE, "B2")  # a full refresh: the emitted mark drops the version
    out, state = remodel({"sales_order": frame("sales_order", [bad])}, state, again)
    assert "fact_sales_order" not in out and again.found().num_rows == 0
    assert state.rejected.num_rows == 1, "still open: the source row is not corrected"

    fixed = {**bad, "agreed_delivery_date": "2024-03-01", "last_updated": CREATED + timedelta(1)}
    out, state = remodel(
        {"sales_order": frame("sales_order", [fixed])}, state, RejectLog(SET_ASIDE, "B3")
    )
    assert out["fact_sales_order"].column("sales_order_id").to_pylist() == [6]
    assert state.rejected.num_rows == 0, "the corrected version closed it"


def test_a_dimension_re_read_is_recognised_and_its_fix_closes_it() -> None:
    batch = {
        "staff": frame("staff", [staff(1, 4)]),
        "department": frame("department", [department(4, None)]),
    }
    log = RejectLog(SET_ASIDE, "B1")
    _, state = remodel(batch, TransformState(), log)
    assert state.rejected.num_rows == 1

    overlap = RejectLog(SET_ASIDE, "B2")
    _, state = remodel(batch, state, overlap)
    new, _ = overlap.settle(TransformState().rejected)
    assert new.num_rows == 1 and overlap.settle(state.rejected)[0].num_rows == 0

    fix = {"department": frame("department", [department(4, "Leeds", CREATED)])}
    out, state = remodel(fix, state, RejectLog(SET_ASIDE, "B3"))
    assert out["dim_staff"].column("staff_id").to_pylist() == [1]
    assert state.rejected.num_rows == 0
