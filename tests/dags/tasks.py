"""The task ids of `totesys_etl`, in the order a run executes them: one list for every test
that checks a whole run (tests/dags/test_dag_structure.py checks the DAG itself has them)."""

from __future__ import annotations

ETL_TASKS = (
    "ingest",
    "wait_for_manifest",
    "transform",
    "report_set_aside",
    "load_due",
    "load",
    "freshness",
)
