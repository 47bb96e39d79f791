"""`status` reads what MWAA's pip install wrote (CloudWatch Logs in moto): MWAA reports the
environment AVAILABLE even when requirements.txt did not install."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.deploy.mwaa.conftest import LOG_GROUP_SUFFIX, Deployment, log_group_arn

HOST = "requirements_install_ip-10-0-1-23.eu-west-2.compute.internal"
# as the MWAA 3.0.6 image logs pip's output: '[%(levelname)s] - %(message)s', all at INFO
PIP_FAILED = [
    "[INFO] - Collecting tenacity==9.1.2",
    "[INFO] - ERROR: Could not find a version that satisfies the requirement "
    "no-such-package==1.0 (from versions: none)",
    "[INFO] - ERROR: No matching distribution found for no-such-package==1.0",
]  # fmt: skip
PIP_OK = ["[INFO] - Collecting tenacity==9.1.2", "[INFO] - Successfully installed tenacity-9.1.2"]


def _environment(deployment: Deployment, updated: datetime) -> dict[str, Any]:
    """get_environment after an update that began at `updated` and ended AVAILABLE."""
    return {"Environment": {
        "Name": deployment.mwaa_name, "Status": "AVAILABLE", "AirflowVersion": "3.0.6",
        "WebserverUrl": "abc.eu-west-2.airflow.amazonaws.com",
        "LastUpdate": {"Status": "SUCCESS", "CreatedAt": updated}, "Tags": {"project": "totesys"},
        "LoggingConfiguration": {kind: {"Enabled": True, "LogLevel": "INFO",
                                        "CloudWatchLogGroupArn": log_group_arn(deployment.mwaa_name, kind)}
                                 for kind in LOG_GROUP_SUFFIX},
    }}  # fmt: skip


def _log(deployment: Deployment, kind: str, stream: str, lines: list[str], at: datetime) -> None:
    """Write pip's output as MWAA does: one event per line in the install stream."""
    logs = deployment.clients.logs
    group = f"airflow-{deployment.mwaa_name}-{LOG_GROUP_SUFFIX[kind]}"
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    start = int(at.timestamp() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": start + index, "message": line} for index, line in enumerate(lines)])  # fmt: skip


def _status(deployment: Deployment, updated: datetime) -> int:
    deployment.stub.add_response("get_environment", _environment(deployment, updated))
    deployment.stub.add_response("invoke_rest_api",
                                 {"RestApiStatusCode": 200, "RestApiResponse": {"dag_runs": []}})  # fmt: skip
    code = deployment.run("status")
    deployment.stub.assert_no_pending_responses()
    return code


def test_status_says_when_pip_failed_although_mwaa_is_available(deployment: Deployment) -> None:
    updated = datetime.now(UTC) - timedelta(minutes=20)
    _log(deployment, "SchedulerLogs", HOST, PIP_OK, updated + timedelta(minutes=5))
    _log(
        deployment,
        "WorkerLogs",
        HOST.replace("23", "77"),
        PIP_FAILED,
        updated + timedelta(minutes=6),
    )

    assert _status(deployment, updated) == 1
    (line,) = [line for line in deployment.output if "requirements:" in line]
    assert line == (
        f"  requirements: pip FAILED in 1 of 2 install log(s), e.g. "
        f"airflow-{deployment.mwaa_name}-Worker/{HOST.replace('23', '77')}: ERROR: Could not find a "
        "version that satisfies the requirement no-such-package==1.0 (from versions: none)"
    )
    assert f"{deployment.mwaa_name}: AVAILABLE (Airflow 3.0.6)" in deployment.output


def test_an_install_from_before_the_last_update_does_not_count(deployment: Deployment) -> None:
    updated = datetime.now(UTC) - timedelta(minutes=20)
    _log(deployment, "SchedulerLogs", HOST + "-old", PIP_FAILED, updated - timedelta(hours=3))
    _log(deployment, "SchedulerLogs", HOST, PIP_OK, updated + timedelta(minutes=5))

    assert _status(deployment, updated) == 0
    assert "  requirements: installed (1 install log(s) without errors)" in deployment.output


@pytest.mark.parametrize("logged", [False, True])
def test_no_install_log_since_the_update_is_said_plainly(
    deployment: Deployment, logged: bool
) -> None:
    updated = datetime.now(UTC) - timedelta(minutes=1)
    if logged:  # only an old install: the update's has not been written yet
        _log(deployment, "WorkerLogs", HOST, PIP_FAILED, updated - timedelta(hours=1))
    assert _status(deployment, updated) == 0
    assert "  requirements: no install log since the last update (yet)" in deployment.output


def test_an_update_whose_pip_install_failed_fails_the_apply(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.deploy.mwaa.test_apply import first_apply, update_requirements

    created = first_apply(deployment)
    began = datetime.now(UTC) - timedelta(minutes=1)
    _log(deployment, "WorkerLogs", HOST, PIP_FAILED, datetime.now(UTC))
    update_requirements(deployment, created, "no-such-package==1.0", "AVAILABLE",
                        {"Status": "SUCCESS", "CreatedAt": began})  # fmt: skip

    assert deployment.run() == 1
    assert capsys.readouterr().err == (
        f"error: {deployment.mwaa_name} is AVAILABLE but requirements: pip FAILED in 1 of 1 "
        f"install log(s), e.g. airflow-{deployment.mwaa_name}-Worker/{HOST}: ERROR: Could not "
        "find a version that satisfies the requirement no-such-package==1.0 (from versions: none)\n"
    )


def test_an_update_whose_pip_install_succeeded_says_so(deployment: Deployment) -> None:
    from tests.deploy.mwaa.test_apply import first_apply, update_requirements

    created = first_apply(deployment)
    began = datetime.now(UTC) - timedelta(minutes=1)
    _log(deployment, "SchedulerLogs", HOST, PIP_OK, datetime.now(UTC))
    update_requirements(deployment, created, "tenacity==9.1.2", "AVAILABLE",
                        {"Status": "SUCCESS", "CreatedAt": began})  # fmt: skip

    assert deployment.run() == 0
    assert "requirements: installed (1 install log(s) without errors)" in deployment.output


@pytest.mark.parametrize("line", [
    "[INFO] - ERROR: Could not find a version that satisfies the requirement x==1",
    "ERROR: Could not find a version that satisfies the requirement x==1",  # bare pip
    "  [WARNING] - ERROR: Could not find a version that satisfies the requirement x==1",
])  # fmt: skip
def test_a_pip_error_is_found_behind_the_images_logging_prefix(line: str) -> None:
    from deploy.mwaa.requirements_log import PIP_ERROR

    found = PIP_ERROR.match(line)
    assert found is not None
    assert found.group(1) == "ERROR: Could not find a version that satisfies the requirement x==1"


@pytest.mark.parametrize("line", [
    "[INFO] - Successfully installed tenacity-9.1.2",
    "[INFO] - WARNING: pip is being invoked by an old script wrapper",
    "[INFO] -   Ignoring ERROR: lines in a package's description",
])  # fmt: skip
def test_other_lines_are_not_pip_errors(line: str) -> None:
    from deploy.mwaa.requirements_log import PIP_ERROR

    assert PIP_ERROR.match(line) is None


def test_install_logs_that_cannot_be_read_fail_the_check(deployment: Deployment) -> None:
    """An AccessDenied reading the logs is no evidence that pip succeeded."""
    from botocore.awsrequest import AWSResponse

    def denied(**_: Any) -> Any:
        parsed = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"},
                  "ResponseMetadata": {"HTTPStatusCode": 400}}  # fmt: skip
        return AWSResponse("https://logs.eu-west-2.amazonaws.com/", 400, {}, None), parsed

    deployment.clients.logs.meta.events.register("before-call.logs.DescribeLogStreams", denied)
    assert _status(deployment, datetime.now(UTC) - timedelta(minutes=5)) == 1
    (line,) = [line for line in deployment.output if "requirements:" in line]
    assert line.startswith(
        "  requirements: cannot read the install logs (AccessDeniedException), so pip's result "
        "is unknown"
    )
