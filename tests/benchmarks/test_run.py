"""The benchmark runs end to end at a tiny scale and writes well-formed results (no timing
is asserted: speed is measured in benchmarks/, not tested)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.run import main


def test_benchmark_completes_and_writes_json_and_markdown(tmp_path: Path) -> None:
    """Against the committed code (HEAD) too, as `make bench COMPARE=<ref>` does."""
    assert main(["--scale", "0.02", "--results", str(tmp_path), "--compare-with", "HEAD"]) == 0

    result = json.loads((tmp_path / "scale-0.02.json").read_text())
    for run in ("first_cycle", "incremental_one_day", "burst_100_rows", "no_change"):
        assert [s["stage"] for s in result[run]["stages"]] == ["ingest", "transform", "load"]
        assert all(s["seconds"] > 0 and s["peak_rss_mb"] > 0 for s in result[run]["stages"])
    assert result["limits"]["extract_rows"] == result["seed"]["rows"]
    assert result["limits"]["load_rows"] > 0
    assert result["burst_100_rows"]["stages"][0]["rows"] == 100
    assert result["first_cycle"]["ratio_to_limits"] > 0
    table = (tmp_path / "scale-0.02.md").read_text()
    assert table.count("| first_cycle |") == 5 and "Ratios: first cycle" in table  # 4 + comparison
    assert result["reconcile"]["seconds"] > 0 and "Reconcile (`python -m etl reconcile`" in table
    assert [s["rows"] for s in result["no_change"]["stages"]] == [0, 0, 0]
    baseline = result["baseline"]
    assert baseline["ref"] == "HEAD" and baseline["result"]["no_change"]["seconds"] > 0
    assert f"| no_change | {result['no_change']['seconds']:.2f} |" in table
    assert f"Against `HEAD` ({baseline['commit']})" in table
