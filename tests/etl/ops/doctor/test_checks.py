"""doctor's pure checks over a lake built by hand: no services, only `check` and `plan`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from etl.ops import doctor
from etl.transform.batch import SNAPSHOT_PREFIX
from tests.etl.ops.doctor.pipeline import LATER


def _lake(now: datetime) -> doctor.Lake:
    """A lake with nothing in it, built by hand for the pure checks."""
    empty_bucket: Any = doctor.Bucket("b", {}, {}, {}, {}, [], None)
    return doctor.Lake(empty_bucket, doctor.Bucket("p", {}, {}, {}, {}, [], None), [], {}, now)


def test_debris_of_a_live_writer_is_only_noted_until_it_is_old() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    lake = _lake(now)
    minute_old = now - timedelta(minutes=1)
    lake.processed.objects = {
        f"{SNAPSHOT_PREFIX}{LATER}/address.parquet": doctor.StoredObject(
            f"{SNAPSHOT_PREFIX}{LATER}/address.parquet", 3, minute_old
        ),
        "fact_payment/x.parquet": doctor.StoredObject("fact_payment/x.parquet", 3, minute_old),
    }
    lake.processed.uploads = [doctor.OpenUpload("fact_payment/y.parquet", "u1", minute_old)]

    live = doctor.check(lake, timedelta(hours=1))
    dead = doctor.check(lake, timedelta(seconds=30))

    assert live.healthy and len(live.notes) == 3, live.notes
    assert [f.check for f in dead.findings] == ["snapshots", "orphans", "uploads"]
    assert [a.kind for a in doctor.plan(dead)] == [
        doctor.ABORT_UPLOAD,
        doctor.DELETE_OBJECT,
        doctor.DELETE_OBJECT,
    ]
