"""Did MWAA's pip install of requirements.txt succeed? MWAA reports the environment
AVAILABLE even when it did not (the DAG then fails to import, and no task runs to send an
email), so `status` reads what pip wrote: MWAA logs each container's install to a stream
named `requirements_install_<host>` in the scheduler and worker log groups.

The image logs pip's output through Python logging as `[%(levelname)s] - %(message)s`, so a
pip error reads `[INFO] - ERROR: Could not find a version ...`: pip's `ERROR:` is matched
after that prefix as well as bare. Logs that cannot be read (AccessDenied, throttling) are
no evidence of success: the check then fails, saying why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from deploy.mwaa.aws import error_code, is_not_found

STREAM_PREFIX = "requirements_install"
# the log groups pip's output goes to, and the names MWAA gives them
LOG_GROUPS = {"SchedulerLogs": "Scheduler", "WorkerLogs": "Worker"}
# pip's error line, bare or behind the image's `[LEVEL] - ` logging prefix
PIP_ERROR = re.compile(r"^\s*(?:\[[A-Z]+\]\s*-\s*)?(ERROR:.*)$")
SHOWN_CHARACTERS = 300


@dataclass(frozen=True)
class InstallLog:
    stream: str  # log group / stream
    errors: tuple[str, ...]  # pip's ERROR: lines


def log_group_names(environment: Mapping[str, Any]) -> list[str]:
    """From get_environment's LoggingConfiguration (its CloudWatchLogGroupArn), else the
    names MWAA uses (`airflow-<name>-Scheduler`, `airflow-<name>-Worker`)."""
    logging = environment.get("LoggingConfiguration", {})
    names = []
    for kind, suffix in LOG_GROUPS.items():
        arn = str(logging.get(kind, {}).get("CloudWatchLogGroupArn", ""))
        name = arn.partition(":log-group:")[2].split(":")[0]
        names.append(name or f"airflow-{environment.get('Name')}-{suffix}")
    return names


def install_logs(logs: Any, environment: Mapping[str, Any]) -> list[InstallLog]:
    """Each requirements install logged since the environment's last update began (or its
    creation), with pip's error lines."""
    since = environment.get("LastUpdate", {}).get("CreatedAt") or environment.get("CreatedAt")
    since_ms = int(since.timestamp() * 1000) if isinstance(since, datetime) else 0
    found = []
    for group in log_group_names(environment):
        for stream in _streams(logs, group):
            if int(stream.get("lastEventTimestamp", 0)) < since_ms:
                continue  # an install from before the last update
            name = stream["logStreamName"]
            errors = tuple(
                error.group(1).strip()[:SHOWN_CHARACTERS]
                for line in _messages(logs, group, name, since_ms)
                if (error := PIP_ERROR.match(line))
            )
            found.append(InstallLog(f"{group}/{name}", errors))
    return found


def describe(logs: Any, environment: Mapping[str, Any]) -> tuple[bool, str]:
    """(whether the check failed: pip failed or its logs could not be read, one line for
    `status`)."""
    try:
        found = install_logs(logs, environment)
    except ClientError as error:
        return True, (
            f"requirements: cannot read the install logs ({error_code(error)}), so pip's "
            "result is unknown; the caller needs logs:DescribeLogStreams and logs:GetLogEvents"
        )
    failed = [log for log in found if log.errors]
    if failed:
        return True, (
            f"requirements: pip FAILED in {len(failed)} of {len(found)} install log(s), "
            f"e.g. {failed[0].stream}: {failed[0].errors[0]}"
        )
    if not found:
        return False, "requirements: no install log since the last update (yet)"
    return False, f"requirements: installed ({len(found)} install log(s) without errors)"


def _streams(logs: Any, group: str) -> Iterator[dict[str, Any]]:
    pages = logs.get_paginator("describe_log_streams").paginate(
        logGroupName=group, logStreamNamePrefix=STREAM_PREFIX
    )
    try:
        for page in pages:
            yield from page.get("logStreams", [])
    except ClientError as error:
        if not is_not_found(error):  # no such log group: nothing logged there yet
            raise


def _messages(logs: Any, group: str, stream: str, since_ms: int) -> Iterator[str]:
    """Every event of the stream from `since_ms` on, oldest first (until the token repeats)."""
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream,
                              "startFromHead": True, "startTime": since_ms}  # fmt: skip
    while True:
        page = logs.get_log_events(**kwargs)
        for event in page.get("events", []):
            yield from str(event.get("message", "")).splitlines()
        token = page.get("nextForwardToken")
        if not token or token == kwargs.get("nextToken"):
            return
        kwargs["nextToken"] = token
