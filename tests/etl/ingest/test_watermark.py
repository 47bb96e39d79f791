"""Bookmark transitions are pure and keep exactly the overlap window's versions."""

from __future__ import annotations

from datetime import datetime, timedelta

from etl.ingest.watermark import Bookmark, IngestState

T0 = datetime(2024, 11, 14, 7, 55, 11, 123000)
OVERLAP = timedelta(minutes=15)


def test_first_extract_has_no_lower_bound() -> None:
    assert Bookmark().lower_bound(OVERLAP) is None


def test_lower_bound_is_closed_and_behind_the_watermark_by_the_overlap() -> None:
    assert Bookmark(T0).lower_bound(OVERLAP) == T0 - OVERLAP


def test_advance_keeps_versions_inside_the_new_window_only() -> None:
    old = Bookmark(T0, frozenset({(1, T0 - timedelta(minutes=20)), (2, T0)}))
    new_max = T0 + timedelta(minutes=10)
    after = old.advance(new_max, [(3, new_max), (4, T0 - timedelta(minutes=6))], OVERLAP)
    assert after.value == new_max
    assert after.seen == {(2, T0), (3, new_max)}


def test_empty_extract_changes_nothing() -> None:
    mark = Bookmark(T0, frozenset({(2, T0)}))
    assert mark.advance(None, [], OVERLAP) is mark


def test_watermark_never_moves_backwards() -> None:
    # a late row older than the watermark must not pull it back
    after = Bookmark(T0).advance(
        T0 - timedelta(minutes=5), [(9, T0 - timedelta(minutes=5))], OVERLAP
    )
    assert after.value == T0
    assert (9, T0 - timedelta(minutes=5)) in after.seen


def test_state_round_trips_through_json() -> None:
    state = IngestState("20261128T000000000000Z", {"payment": Bookmark(T0, frozenset({(5, T0)}))})
    assert IngestState.from_json(state.to_json()) == state
    assert IngestState.from_json(None) == IngestState()


def test_a_future_dated_row_cannot_push_the_watermark_past_the_source_clock() -> None:
    future = datetime(2099, 1, 1)
    after = Bookmark(T0).advance(future, [(7, future)], OVERLAP, ceiling=T0 + timedelta(minutes=1))
    assert after.value == T0 + timedelta(minutes=1)
    assert (7, future) in after.seen, "the future row is not re-extracted every batch"
