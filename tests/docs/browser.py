"""Headless Chromium driven over the DevTools protocol, with the standard library only.

Chromium's `--remote-debugging-pipe` reads protocol commands from file descriptor 3 and
writes answers and events to descriptor 4, each message a JSON text ended by a NUL byte.
That is all a screenshot test needs (open a page, read its DOM, click, capture), so no
browser-driver package and no downloaded browser: Debian's `chromium` is used as it is.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

# What the brief for these screenshots asks of every run: no sandbox (root in CI), no GPU,
# nothing fetched in the background, a new empty profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    pass


def chromium_executable() -> str:
    """Debian's `chromium` (`.ci/run` installs it where it is missing)."""
    found = shutil.which("chromium")
    if found is None:
        raise BrowserError("chromium is not installed: apt-get install -y chromium")
    return found


class Browser:
    """One headless Chromium with one page, sized width x height CSS pixels."""

    def __init__(self, profile_dir: Path, width: int = 1600, height: int = 1000) -> None:
        profile_dir.mkdir(parents=True, exist_ok=False)  # a new empty profile every time
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def on_descriptors_3_and_4() -> None:
            os.dup2(commands_read, 3)
            os.dup2(answers_write, 4)

        self._process = subprocess.Popen(
            [
                chromium_executable(),
                *FLAGS,
                f"--user-data-dir={profile_dir}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            pass_fds=(3, 4, commands_read, answers_write),
            preexec_fn=on_descriptors_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.page("Page.enable")
        self.page(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are dropped."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read(timeout=60)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, self._session, **params)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise BrowserError("chromium did not answer within the time allowed")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise BrowserError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def open(self, url: str, timeout: float = 60) -> None:
        """Navigate and wait until the new document has loaded, so nothing later reads the
        page that was there before."""
        self.page("Page.navigate", url=url)
        self.wait_for(
            f"decodeURIComponent(location.href) === {json.dumps(url)}"
            " && document.readyState === 'complete'",
            timeout,
        )

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """The first truthy value of a JavaScript expression, polled while the page works."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # the document is being replaced
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} stayed false for {timeout:.0f} s")
            time.sleep(0.5)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def wait_for_text(self, wanted: list[str], timeout: float = 60) -> str:
        """The page's visible text once it shows every one of `wanted`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            missing = [w for w in wanted if w not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise BrowserError(f"the page never showed {missing}; it showed: {text[:500]!r}")
            time.sleep(0.5)

    def click_button(self, label: str) -> None:
        """Click the first button whose visible text or aria-label is exactly `label`."""
        clicked = self.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')].find(e =>"
            f" e.innerText.trim() === {json.dumps(label)}"
            f" || e.getAttribute('aria-label') === {json.dumps(label)});"
            " if (b) { b.click(); return true; } return false; })()"
        )
        if not clicked:
            raise BrowserError(f"no button labelled {label!r} on the page")

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.page("Page.captureScreenshot", format="png")["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        with contextlib.suppress(BrowserError):  # it may already be gone
            self.call("Browser.close")
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._commands)
        os.close(self._answers)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
