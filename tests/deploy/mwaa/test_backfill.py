"""`python -m deploy mwaa backfill` through MWAA's invoke_rest_api (stubbed, validated against
botocore's model): the backfill Airflow 3 creates with `POST /api/v2/backfills`."""

from __future__ import annotations

import pytest

from tests.deploy.mwaa.conftest import Deployment, expect_owned


def test_backfill_creates_an_airflow_backfill_over_the_range(deployment: Deployment) -> None:
    expect_owned(deployment)
    deployment.stub.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"id": 7, "dag_id": "totesys_etl"}},
        expected_params={
            "Name": deployment.mwaa_name,
            "Method": "POST",
            "Path": "/backfills",
            "Body": {"dag_id": "totesys_etl", "from_date": "2026-11-27T00:00:00+00:00",
                     "to_date": "2026-11-28T00:00:00+00:00", "run_backwards": False,
                     "dag_run_conf": {"tables": ["sales_order"]}, "reprocess_behavior": "completed",
                     "max_active_runs": 3},
        },
    )  # fmt: skip
    code = deployment.run("backfill", "--from", "2026-11-27T00:00", "--to", "2026-11-28T00:00:00Z",
                          "--tables", "sales_order")  # fmt: skip
    assert code == 0
    assert deployment.output == [
        "backfill 7 created: totesys_etl from 2026-11-27T00:00:00+00:00"
        " to 2026-11-28T00:00:00+00:00, 3 run(s) at a time"
    ]


def test_backfill_options_are_passed_through(deployment: Deployment) -> None:
    expect_owned(deployment)
    deployment.stub.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"id": 8}},
        expected_params={
            "Name": deployment.mwaa_name, "Method": "POST", "Path": "/backfills",
            "Body": {"dag_id": "totesys_etl", "from_date": "2026-11-27T01:00:00+00:00",
                     "to_date": "2026-11-27T02:00:00+00:00", "run_backwards": False,
                     "dag_run_conf": {"tables": []}, "reprocess_behavior": "none",
                     "max_active_runs": 1},
        },
    )  # fmt: skip
    code = deployment.run("backfill", "--from", "2026-11-27T02:00+01:00", "--to", "2026-11-27T02:00",
                          "--max-active-runs", "1", "--reprocess-behavior", "none")  # fmt: skip
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: backfill needs --from and --to\n"),
        (("--from", "2026-11-28", "--to", "2026-11-27"),
         "error: --from 2026-11-28T00:00:00+00:00 is after --to 2026-11-27T00:00:00+00:00\n"),
        (("--from", "2026-11-27", "--to", "2026-11-28", "--max-active-runs", "0"),
         "error: --max-active-runs must be at least 1, not 0\n"),
    ],
)  # fmt: skip
def test_a_bad_range_is_one_line_and_calls_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert deployment.run("backfill", *args) == 1
    assert capsys.readouterr().err == message
    deployment.stub.assert_no_pending_responses()


def test_a_refused_backfill_is_one_line_and_exit_1(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_owned(deployment)
    deployment.stub.add_client_error(
        "invoke_rest_api", service_error_code="RestApiClientException",
        service_message="DAG totesys_etl has no schedule", http_status_code=400,
    )  # fmt: skip
    assert deployment.run("backfill", "--from", "2026-11-27", "--to", "2026-11-28") == 1
    error = capsys.readouterr().err
    assert error.startswith("error: POST /backfills on ") and "RestApiClientException" in error
    assert error.count("\n") == 1
