"""One email per batch that set rows aside, naming each row (table, key, column, value,
reason) and what to do; sent once, not again on retries or re-runs (the cursor in
etl.transform.rejects_area remembers the last batch reported)."""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from etl.errors import LeaseLostError
from etl.load import too_large
from etl.load.apply import Connection
from etl.storage import ObjectStore
from etl.transform import rejects, rejects_area
from totesys_airflow.config import DagConfig

log = logging.getLogger(__name__)

SUBJECT = "[totesys] {{ aside.count }} row(s) set aside in batch {{ aside.batch_id }}"
BODY = """
<h3>totesys pipeline: rows set aside</h3>
<p>Batch {{ aside.batch_id }} could not turn these source rows into warehouse rows. Every other
row of the batch, and every later batch, flows on. Correct each row in totesys (a newer
last_updated) and the next run loads it; facts that refer to a set-aside dimension row wait
for it. <code>python -m etl status</code> lists what is still open; docs/operations.md,
"Rows set aside", says how to read the rejects area.</p>
<pre>{{ aside.lines | e }}</pre>
"""
SHOWN_ROWS = 50


def _email(config: DagConfig) -> SmtpNotifier:
    return SmtpNotifier(
        to=list(config.alert_emails),
        from_email=config.alert_from,
        smtp_conn_id="smtp_default",
        subject=SUBJECT,
        html_content=BODY,
    )


def _send(notifier: SmtpNotifier, context: Any, batch: rejects_area.BatchRejects) -> bool:
    """True once the SMTP server took the email; a refusal or outage is logged (the next
    run sends it), never a reason to fail the run and hold the load back."""
    aside = {
        "batch_id": batch.batch_id,
        "count": batch.rows.num_rows,
        "lines": "\n".join(rejects.describe(batch.rows, SHOWN_ROWS)),
    }
    fresh: Any = copy.copy(notifier)  # rendering mutates the notifier
    with_aside: Any = {**context, "aside": aside}
    try:
        fresh.render_template_fields(with_aside)
        fresh.notify(with_aside)
    except Exception:
        log.exception(
            "set-aside email for batch %s not sent; the next run tries again", batch.batch_id
        )
        return False
    return True


def email_load_set_aside_rows(config: DagConfig, warehouse: Connection, context: Any) -> list[str]:
    """Email every batch whose rows load set aside (too large for this warehouse's
    columns) and that was not emailed yet; returns the batch ids emailed. `warehouse` is
    the load run's own connection (etl.ops.monitoring.monitored_load hands it over)."""
    notifier = _email(config)
    try:
        return too_large.report_unreported(warehouse, lambda batch: _send(notifier, context, batch))
    except Exception:  # the rows were loaded or set aside already; the next load retries
        log.exception("emails of rows set aside at load not sent; the next load tries again")
        with contextlib.suppress(Exception):  # a broken connection is closed by its owner
            warehouse.rollback()
        return []


def email_set_aside_rows(config: DagConfig, s3: Any, context: Any) -> list[str]:
    """Email every batch with set-aside rows not reported yet, oldest first; returns the
    batch ids emailed."""
    processed = ObjectStore(s3, config.processed_bucket)
    notifier = _email(config)
    sent: list[str] = []
    try:
        cursor = rejects_area.read_cursor(processed)
        for batch in rejects_area.unreported(processed, cursor):
            if not _send(notifier, context, batch):
                break
            rejects_area.mark_reported(processed, cursor, batch.batch_id)
            sent.append(batch.batch_id)
    except LeaseLostError:  # another run reported meanwhile and moved the cursor on
        pass
    except Exception:
        # S3 down, a damaged cursor or rejects file: logged, never a reason to hold the
        # load back; the next run tries again, and `etl doctor` names (and repairs) damage
        log.exception(
            "set-aside emails not sent; the next run tries again (etl doctor names damage)"
        )
    return sent
