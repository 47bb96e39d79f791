"""The benchmark runs end to end at a tiny scale and writes well-formed results (no timing
is asserted: speed is measured in benchmarks/, not tested)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.run import main


def test_benchmark_completes_and_writes_json_and_markdown(tmp_path: Path) -> None:
    assert main(["--scale", "0.02", "--results", str(tmp_path)]) == 0

    result = json.loads((tmp_path / "scale-0.02.json").read_text())
    for run in ("first_cycle", "incremental_one_day", "burst_100_rows"):
        assert [s["stage"] for s in result[run]["stages"]] == ["ingest", "transform", "load"]
        assert all(s["seconds"] > 0 and s["peak_rss_mb"] > 0 for s in result[run]["stages"])
    assert result["limits"]["extract_rows"] == result["seed"]["rows"]
    assert result["limits"]["load_rows"] > 0
    assert result["burst_100_rows"]["stages"][0]["rows"] == 100
    assert result["first_cycle"]["ratio_to_limits"] > 0
    table = (tmp_path / "scale-0.02.md").read_text()
    assert table.count("| first_cycle |") == 4 and "Ratios: first cycle" in table
    assert result["reconcile"]["seconds"] > 0 and "Reconcile (`python -m etl reconcile`" in table
