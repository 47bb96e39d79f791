"""The failure email: DAG, task, run, try, the error and the log URL, through SMTP.

`SmtpNotifier` comes from the SMTP provider and works on every Airflow 3 version; on MWAA
the `smtp_default` connection points at SES on port 587.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import get_current_context

from totesys_airflow.config import DagConfig

SUBJECT = (
    "[totesys] {{ ti.dag_id }}.{{ ti.task_id }} failed (run {{ run_id }}, try {{ ti.try_number }})"
)
BODY = """
<h3>totesys pipeline: task failed</h3>
<table>
  <tr><td>DAG</td><td>{{ ti.dag_id }}</td></tr>
  <tr><td>Task</td><td>{{ ti.task_id }}</td></tr>
  <tr><td>Run</td><td>{{ run_id }}</td></tr>
  <tr><td>Try</td><td>{{ ti.try_number }}</td></tr>
  <tr><td>Error</td><td>{{ error | e }}</td></tr>
  <tr><td>Log</td><td><a href="{{ ti.log_url }}">{{ ti.log_url }}</a></td></tr>
</table>
"""


ERROR_KEY = "failure"


@contextmanager
def error_kept_for_the_email() -> Iterator[None]:
    """Keep a task's error in XCom so the failure email can show it on every runner.

    Airflow 3.0.6's in-process runner (`airflow dags test`) does not pass the exception to
    failure callbacks; the scheduler's runner does. The message is one line from etl, which
    never contains credentials.
    """
    try:
        yield
    except Exception as error:
        get_current_context()["ti"].xcom_push(
            key=ERROR_KEY, value=f"{type(error).__name__}: {error}"
        )
        raise


class FailureEmail(SmtpNotifier):
    """SmtpNotifier whose templates also get `error`: the exception when Airflow passes it
    to the callback, else the message the task kept in XCom, else a pointer to the log.
    Never raises while rendering, whichever component runs the callback."""

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        with_error: Any = {**context, "error": failure_text(context)}
        super().render_template_fields(with_error, jinja_env)


def failure_text(context: Any) -> str:
    exception = context.get("exception")
    if exception:
        return (
            f"{type(exception).__name__}: {exception}"
            if isinstance(exception, BaseException)
            else str(exception)
        )
    try:
        ti = context["ti"]
        kept = ti.xcom_pull(task_ids=ti.task_id, key=ERROR_KEY)
    except Exception:  # e.g. a callback run where XCom is not reachable
        kept = None
    return str(kept) if kept else "not available to the callback; see the task log"


def failure_email(config: DagConfig) -> SmtpNotifier:
    return FailureEmail(
        to=list(config.alert_emails),
        from_email=config.alert_from,
        smtp_conn_id="smtp_default",
        subject=SUBJECT,
        html_content=BODY,
    )
