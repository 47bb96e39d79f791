"""remodel across batches: history in facts, SCD1 dims that follow their parents."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from etl.transform.remodel import TransformState, remodel
from etl.transform.versions import latest_versions
from tests.etl.transform.frames import (
    SEEDED,
    address,
    counterparty,
    department,
    frame,
    payment,
    staff,
)

CREATED = datetime(2024, 11, 14, 9, 12, 10, 51000)
PAID_AT = datetime(2024, 11, 15, 7, 55, 11, 311000)
EDITED = datetime(2024, 11, 20, 16, 25, 45, 36000)


def first_batch() -> dict[str, pa.Table]:
    return {
        "address": frame("address", [address(8), address(15), address(29)]),
        "counterparty": frame(
            "counterparty", [counterparty(1, 15), counterparty(4, 29), counterparty(7, 15)]
        ),
        "department": frame("department", [department(4, "Leds"), department(6, "Manchester")]),
        "staff": frame("staff", [staff(1, 6), staff(2, 6), staff(3, 4)]),
        "payment": frame("payment", [payment(9, CREATED, CREATED, False)]),
    }


def test_a_payment_that_flips_to_paid_becomes_two_fact_rows() -> None:
    out1, state = remodel(first_batch(), TransformState())
    out2, _ = remodel({"payment": frame("payment", [payment(9, CREATED, PAID_AT, True)])}, state)

    rows = out1["fact_payment"].to_pylist() + out2["fact_payment"].to_pylist()
    assert [(r["payment_id"], r["paid"], r["last_updated_date"]) for r in rows] == [
        (9, False, CREATED.date()), (9, True, PAID_AT.date()),
    ]  # fmt: skip
    assert PAID_AT.date() in out2["dim_date"].column("date_id").to_pylist()


def test_versions_already_emitted_are_not_emitted_again() -> None:
    _, state = remodel(first_batch(), TransformState())
    overlap_reread = frame(
        "payment", [payment(9, CREATED, CREATED, False), payment(9, CREATED, CREATED, False)]
    )

    out, _ = remodel({"payment": overlap_reread}, state)

    assert "fact_payment" not in out


def test_the_same_version_twice_in_one_batch_is_one_fact_row() -> None:
    twice = frame("payment", [payment(9, CREATED, CREATED, False)] * 2)
    out, _ = remodel({"payment": twice}, TransformState())
    assert out["fact_payment"].num_rows == 1


def test_an_address_edit_refreshes_location_and_every_counterparty_on_it() -> None:
    _, state = remodel(first_batch(), TransformState())
    edit = frame("address", [address(15, "1 New Road", EDITED)])

    out, state_after = remodel({"address": edit}, state)

    assert out["dim_location"].to_pylist()[0]["address_line_1"] == "1 New Road"
    refreshed = sorted(out["dim_counterparty"].to_pylist(), key=lambda r: r["counterparty_id"])
    assert [r["counterparty_id"] for r in refreshed] == [1, 7], (
        "both counterparties on address 15, not 4"
    )
    assert {r["counterparty_legal_address_line_1"] for r in refreshed} == {"1 New Road"}
    assert set(out) == {"dim_location", "dim_counterparty"}
    current = state_after.current["address"].to_pylist()
    assert [a["address_line_1"] for a in current if a["address_id"] == 15] == ["1 New Road"]


def test_a_counterparty_moving_address_takes_the_new_address() -> None:
    _, state = remodel(first_batch(), TransformState())
    moved = frame("counterparty", [counterparty(4, 8, EDITED)])

    out, _ = remodel({"counterparty": moved}, state)

    assert [r["counterparty_id"] for r in out["dim_counterparty"].to_pylist()] == [4]


def test_a_department_edit_refreshes_every_staff_member_in_it() -> None:
    _, state = remodel(first_batch(), TransformState())
    edit = frame("department", [department(6, "Liverpool", EDITED)])

    out, _ = remodel({"department": edit}, state)

    assert sorted((r["staff_id"], r["location"]) for r in out["dim_staff"].to_pylist()) == [
        (1, "Liverpool"), (2, "Liverpool"),
    ]  # fmt: skip


def test_an_older_version_never_overwrites_the_current_state() -> None:
    _, state = remodel(first_batch(), TransformState())
    _, state = remodel({"address": frame("address", [address(15, "new", EDITED)])}, state)
    stale = frame("address", [address(15, "stale", EDITED - timedelta(days=1))])

    _, state = remodel({"address": stale}, state)

    assert [
        a["address_line_1"] for a in state.current["address"].to_pylist() if a["address_id"] == 15
    ] == ["new"]


def test_latest_versions_keeps_the_newest_row_per_key() -> None:
    rows = frame(
        "address", [address(1, "old", SEEDED), address(1, "new", EDITED), address(2, "only")]
    )
    assert sorted((r["address_id"], r["address_line_1"]) for r in latest_versions(rows, "address_id").to_pylist()) == [
        (1, "new"), (2, "only"),
    ]  # fmt: skip


def test_an_empty_batch_produces_nothing() -> None:
    _, state = remodel(first_batch(), TransformState())
    out, after = remodel({}, state)
    assert out == {}
    assert after.current["staff"].equals(state.current["staff"])
