"""`status` and `trigger` through MWAA's invoke_rest_api (stubbed, validated against the model)."""

from __future__ import annotations

import pytest

from tests.deploy.mwaa.conftest import Deployment, expect_owned, not_found


def test_trigger_starts_a_run_now_with_the_chosen_params(deployment: Deployment) -> None:
    expect_owned(deployment)
    deployment.stub.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"dag_run_id": "manual__2026-11-28T05:00:00+00:00"}},
        expected_params={
            "Name": deployment.mwaa_name,
            "Method": "POST",
            "Path": "/dags/totesys_etl/dagRuns",
            "Body": {"logical_date": None,
                     "conf": {"full_refresh": True, "force_load": False, "tables": ["staff", "department"]}},
        },
    )  # fmt: skip
    assert deployment.run("trigger", "--full-refresh", "--tables", "staff,department") == 0
    assert deployment.output == ["triggered manual__2026-11-28T05:00:00+00:00"]


def test_a_refused_trigger_is_one_line_and_exit_1(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_owned(deployment)
    deployment.stub.add_client_error(
        "invoke_rest_api", service_error_code="RestApiClientException",
        service_message="DAG totesys_etl is paused", http_status_code=400,
    )  # fmt: skip
    assert deployment.run("trigger") == 1
    error = capsys.readouterr().err
    assert (
        error.startswith("error: POST /dags/totesys_etl/dagRuns")
        and "RestApiClientException" in error
    )
    assert error.count("\n") == 1


def test_status_shows_the_environment_and_recent_runs(deployment: Deployment) -> None:
    deployment.stub.add_response("get_environment", {"Environment": {
        "Name": deployment.mwaa_name, "Status": "AVAILABLE", "AirflowVersion": "3.0.6",
        "WebserverUrl": "abc.eu-west-2.airflow.amazonaws.com", "LastUpdate": {"Status": "SUCCESS"},
        "Tags": {"project": "totesys"}}})  # fmt: skip
    deployment.stub.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"dag_runs": [
            {"dag_run_id": "scheduled__1", "state": "success", "run_after": "2026-11-28T05:00:00Z"}]}},
        expected_params={"Name": deployment.mwaa_name, "Method": "GET", "Path": "/dags/totesys_etl/dagRuns",
                         "QueryParameters": {"limit": 5, "order_by": "-run_after"}},
    )  # fmt: skip
    assert deployment.run("status") == 0
    assert deployment.output[0] == f"{deployment.mwaa_name}: AVAILABLE (Airflow 3.0.6)"
    assert "  run scheduled__1: success (after 2026-11-28T05:00:00Z)" in deployment.output


def test_status_of_a_missing_environment_exits_1(deployment: Deployment) -> None:
    not_found(deployment.stub)
    assert deployment.run("status") == 1
    assert deployment.output == [f"mwaa environment {deployment.mwaa_name} does not exist"]


def test_unpause_patches_the_dag(deployment: Deployment) -> None:
    expect_owned(deployment)
    deployment.stub.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"dag_id": "totesys_etl", "is_paused": False}},
        expected_params={"Name": deployment.mwaa_name, "Method": "PATCH", "Path": "/dags/totesys_etl",
                         "Body": {"is_paused": False}},
    )  # fmt: skip
    assert deployment.run("unpause") == 0
    assert deployment.output == [f"totesys_etl is unpaused in {deployment.mwaa_name}"]
