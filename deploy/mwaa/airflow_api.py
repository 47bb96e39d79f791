"""Airflow's REST API on MWAA through `invoke_rest_api`: IAM-authorised, so no web login
or token handling here (the caller needs `airflow:InvokeRestApi`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.aws import error_code
from deploy.mwaa.config import DAG_ID, DeployError


def _call(mwaa: Any, name: str, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = mwaa.invoke_rest_api(Name=name, Method=method, Path=path, **kwargs)
    except ClientError as error:
        status = error.response.get("RestApiStatusCode", "")
        detail = error.response.get("RestApiResponse") or error.response.get("Error", {}).get(
            "Message", ""
        )
        raise DeployError(
            f"{method} {path} on {name}: {error_code(error)} {status} {detail}".strip()
        ) from None
    return response.get("RestApiResponse")


def unpause(mwaa: Any, name: str) -> None:
    """A new DAG starts paused; with a private web server this is the way to start it."""
    _call(mwaa, name, "PATCH", f"/dags/{DAG_ID}", Body={"is_paused": False})


def trigger_run(mwaa: Any, name: str, conf: Mapping[str, Any]) -> str:
    """Start a manual run now (no logical date, as the UI's trigger does); its run id."""
    body = {"logical_date": None, "conf": dict(conf)}
    run = _call(mwaa, name, "POST", f"/dags/{DAG_ID}/dagRuns", Body=body)
    if not isinstance(run, dict) or "dag_run_id" not in run:
        raise DeployError(f"trigger on {name}: Airflow answered without a run id")
    return str(run["dag_run_id"])


def create_backfill(
    mwaa: Any,
    name: str,
    from_date: datetime,
    to_date: datetime,
    max_active_runs: int,
    reprocess_behavior: str,
    conf: Mapping[str, Any],
) -> int:
    """`POST /backfills`: a run per schedule interval in [from_date, to_date], each of which
    re-reads its own interval into the warehouse; the backfill's id."""
    body = {
        "dag_id": DAG_ID,
        "from_date": from_date.isoformat(),
        "to_date": to_date.isoformat(),
        "run_backwards": False,
        "dag_run_conf": dict(conf),
        "reprocess_behavior": reprocess_behavior,
        "max_active_runs": max_active_runs,
    }
    created = _call(mwaa, name, "POST", "/backfills", Body=body)
    if not isinstance(created, dict) or "id" not in created:
        raise DeployError(f"backfill on {name}: Airflow answered without a backfill id")
    return int(created["id"])


def recent_runs(mwaa: Any, name: str, limit: int = 5) -> list[dict[str, Any]]:
    found = _call(mwaa, name, "GET", f"/dags/{DAG_ID}/dagRuns",
                  QueryParameters={"limit": limit, "order_by": "-run_after"})  # fmt: skip
    return list(found.get("dag_runs", [])) if isinstance(found, dict) else []
