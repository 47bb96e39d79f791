"""The failure email: exactly one per failure that Airflow will not retry, naming DAG, task,
run and try, with the error and a link to the log, whichever Airflow component notices it.

Airflow 3.0.6 notices a failure in one of three places:

- the task's own process (an exception, `execution_timeout`): the task runner calls the
  task's `on_failure_callback` only when no retry is left (`on_retry_callback` otherwise)
  and puts the exception in the context. `FailureEmail` sends the email there.
- the dag-processor, for a task that died without reporting (its heartbeat was lost, or the
  executor reported it failed): it calls `on_failure_callback` with a bare context, no
  exception, no XCom (a pull blocks until the processor is killed), and also for a try
  that is going to be retried. `FailureEmail` sends nothing there; it notes the task.
- nowhere: a task process killed outright (SIGKILL, out of memory) is marked failed by its
  supervisor with no callback at all.

Every one of these ends the run as failed, and Airflow calls the DAG's
`on_failure_callback` exactly once per failed run (in the dag-processor). `RunFailureEmail`
sends the email there unless the task already did. The two find each other through one
Airflow Variable per running run (the "alert note"): which task started last, and whether
its email went out. The DAG is a chain, so the task that started last in a failed run is
the one that failed. The note is deleted when the run ends.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import Variable, get_current_context

from totesys_airflow.compat import AirflowFailException
from totesys_airflow.config import DagConfig

log = logging.getLogger(__name__)

SUBJECT = (
    "[totesys] {{ alert.dag_id }}.{{ alert.task_id }} failed"
    " (run {{ alert.run_id }}, try {{ alert.try_number }})"
)
BODY = """
<h3>totesys pipeline: task failed</h3>
<table>
  <tr><td>DAG</td><td>{{ alert.dag_id }}</td></tr>
  <tr><td>Task</td><td>{{ alert.task_id }}</td></tr>
  <tr><td>Run</td><td>{{ alert.run_id }}</td></tr>
  <tr><td>Try</td><td>{{ alert.try_number }}</td></tr>
  <tr><td>Error</td><td>{{ alert.error | e }}</td></tr>
  <tr><td>Log</td><td><a href="{{ alert.log_url }}">{{ alert.log_url }}</a></td></tr>
</table>
"""
NO_ERROR = (
    "no error reached Airflow: the task process was killed (e.g. out of memory), stopped"
    " sending heartbeats, or was marked failed by hand; see the task log"
)
EMAIL_FAILED = "the task failed, and its own email could not be sent; its error is in the task log"
NOTE_PREFIX = "totesys_alert_note__"

# Errors kept by `error_kept_for_the_email` in this process, by task instance and try.
_kept: dict[tuple[str, str, str, int], str] = {}


def _ti_key(ti: Any) -> tuple[str, str, str, int]:
    return (ti.dag_id, ti.run_id, ti.task_id, ti.try_number)


@contextmanager
def error_kept_for_the_email() -> Iterator[None]:
    """Keep a task's error for the failure email, which runs later in the same process.

    Airflow 3.0.6's in-process runner (`airflow dags test`) does not pass the exception to
    failure callbacks; the worker's task runner does. The message is one line from etl,
    which never contains credentials; it stays in this process's memory.
    """
    try:
        yield
    except Exception as error:
        _kept[_ti_key(get_current_context()["ti"])] = f"{type(error).__name__}: {error}"
        raise


def note_key(dag_id: str, run_id: str) -> str:
    """The Variable holding a run's alert note (run ids hold `:` and `+`; keys stay plain)."""
    return NOTE_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dag_id}__{run_id}")


def _write_note(ti: Any, alerted: bool, email_failed: bool = False) -> None:
    note = {"task_id": ti.task_id, "try_number": ti.try_number, "alerted": alerted}
    if email_failed:
        note["email_failed"] = True
    Variable.set(note_key(ti.dag_id, ti.run_id), json.dumps(note))


def _read_note(dag_id: str, run_id: str) -> dict[str, Any]:
    raw = Variable.get(note_key(dag_id, run_id), default=None)
    note: dict[str, Any] = json.loads(raw) if raw else {}
    return note


def note_task_started(context: Any) -> None:
    """on_execute_callback: this task is the one running in this run now."""
    _write_note(context["ti"], alerted=False)


def forget_run(context: Any) -> None:
    """The DAG's on_success_callback: a finished run needs no note."""
    try:
        Variable.delete(note_key(context["dag"].dag_id, context["run_id"]))
    except Exception as error:  # e.g. `airflow dags test` runs DAG callbacks without API
        log.warning("alert note not deleted: %s", type(error).__name__)


def log_url(dag_id: str, run_id: str, task_id: str | None = None, try_number: int = 0) -> str:
    """The task's log page as the task runner builds it (api.base_url), else the run's."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    run = f"{base}/dags/{dag_id}/runs/{quote(run_id)}"
    return f"{run}/tasks/{task_id}?try_number={try_number}" if task_id else run


class _Email(SmtpNotifier):
    """SmtpNotifier whose templates get `alert` (dag_id, task_id, run_id, try_number,
    error, log_url). Each email renders a copy: rendering mutates the notifier, and one
    process may send several."""

    def send(self, context: Any, alert: dict[str, Any]) -> bool:
        """True once the SMTP server took the email."""
        fresh: Any = copy.copy(self)
        with_alert: Any = {**context, "alert": alert}
        try:
            fresh.render_template_fields(with_alert)
            fresh.notify(with_alert)
        except Exception:
            log.exception("failure email for %s not sent", alert["task_id"])
            return False
        return True


class FailureEmail(_Email):
    """The tasks' on_failure_callback: emails from the task's own process, where Airflow
    calls it only for a failure it will not retry; elsewhere (the dag-processor) it notes
    the task for `RunFailureEmail` and sends nothing."""

    def __call__(self, *args: Any) -> None:
        context = args[0]
        ti = context["ti"]
        if ti.state != "failed":
            # Not the task runner's verdict: the dag-processor, for a task that died without
            # reporting, maybe before a retry. The run-level email covers it if it is final.
            log.info(
                "failure of %s try %s noted; the run's alert decides", ti.task_id, ti.try_number
            )
            note = _read_note(ti.dag_id, ti.run_id)
            # a callback can come late, after the next try started: keep the newer try
            if note.get("task_id") != ti.task_id or note.get("try_number", 0) <= ti.try_number:
                _write_note(ti, alerted=False)
            return
        alert = {
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "run_id": ti.run_id,
            "try_number": ti.try_number,
            "error": failure_text(context),
            "log_url": ti.log_url or log_url(ti.dag_id, ti.run_id, ti.task_id, ti.try_number),
        }
        sent = self.send(context, alert)
        try:  # when the email could not go out, the run-level email tries again
            _write_note(ti, alerted=sent, email_failed=not sent)
        except Exception as error:
            log.warning("alert note not written: %s", type(error).__name__)


class RunFailureEmail(_Email):
    """The DAG's on_failure_callback (once per failed run, in the dag-processor): emails
    when the failed task could not (killed, heartbeat lost), naming the task from the note."""

    def __call__(self, *args: Any) -> None:
        context = args[0]
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        try:
            note = _read_note(dag_id, run_id)
        except Exception as error:
            # `airflow dags test` runs DAG callbacks outside any task, with no API to ask;
            # its tasks email for themselves.
            log.warning("alert note unreadable (%s); no run-level email", type(error).__name__)
            return
        if not note.get("alerted"):
            # no note: killed before it started executing (while parsing the DAG file)
            task_id = str(note.get("task_id", "(a task killed while starting)"))
            try_number = int(note.get("try_number", 0))
            alert = {
                "dag_id": dag_id,
                "task_id": task_id,
                "run_id": run_id,
                "try_number": try_number,
                "error": EMAIL_FAILED if note.get("email_failed") else NO_ERROR,
                "log_url": log_url(dag_id, run_id, task_id, try_number)
                if note
                else log_url(dag_id, run_id),
            }
            self.send(context, alert)
        forget_run(context)


def failure_text(context: Any) -> str:
    """The exception Airflow passed, else the one kept in this process, else a pointer."""
    exception = context.get("exception")
    if isinstance(exception, AirflowFailException) and exception.__cause__ is not None:
        exception = exception.__cause__  # a terminal error failed fast: name the error itself
    if exception:
        return (
            f"{type(exception).__name__}: {exception}"
            if isinstance(exception, BaseException)
            else str(exception)
        )
    return _kept.get(_ti_key(context["ti"]), "not available to the callback; see the task log")


def _kwargs(config: DagConfig) -> dict[str, Any]:
    return {
        "to": list(config.alert_emails),
        "from_email": config.alert_from,
        "smtp_conn_id": "smtp_default",
        "subject": SUBJECT,
        "html_content": BODY,
    }


def failure_email(config: DagConfig) -> SmtpNotifier:
    return FailureEmail(**_kwargs(config))


def run_failure_email(config: DagConfig) -> SmtpNotifier:
    return RunFailureEmail(**_kwargs(config))


def run_callbacks(config: DagConfig) -> dict[str, Any]:
    """The DAG-level half of the alerting, the same for every DAG of the project: one email
    per failed run when no task could send its own (killed, heartbeat lost), and the run's
    alert note forgotten when it succeeds."""
    return {"on_failure_callback": run_failure_email(config), "on_success_callback": forget_run}


def task_defaults(config: DagConfig) -> dict[str, Any]:
    """What every task of every DAG shares: an outage retries with a growing delay (a bad
    input fails at once instead, see errors.py), a stuck task times out, and a failure
    that is not retried emails once from the task itself."""
    return {
        "retries": config.retries,
        "retry_delay": timedelta(seconds=config.retry_delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=config.task_timeout_minutes),
        "on_failure_callback": failure_email(config),
        "on_execute_callback": note_task_started,
    }
