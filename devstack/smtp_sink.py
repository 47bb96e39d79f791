"""An SMTP server that accepts every message and keeps it in a Maildir.

Alerts are real emails sent over SMTP; the sink stores each one atomically (Maildir's
tmp -> new rename) so tests and people can read them from another process, or with any
mail client. Run as `python -m devstack.smtp_sink --port N --maildir DIR`.
"""

from __future__ import annotations

import argparse
import mailbox
import signal
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MaildirHandler:
    """aiosmtpd handler: every DATA becomes one Maildir message."""

    def __init__(self, maildir: Path) -> None:
        self._mailbox = mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._mailbox.add(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def read_messages(maildir: Path) -> list[EmailMessage]:
    """Every message the sink has kept, oldest first."""
    new = maildir / "new"
    if not new.exists():
        return []
    parser = BytesParser(policy=policy.default)
    files = sorted(new.iterdir(), key=lambda path: (path.stat().st_mtime_ns, path.name))
    messages = []
    for path in files:
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def serve(host: str, port: int, maildir: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    try:
        stop.wait()
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    serve(args.host, args.port, args.maildir)


if __name__ == "__main__":
    main()
