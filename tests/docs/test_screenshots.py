"""Screenshots of the Airflow UI that README.md and docs/ show, taken in a real headless
Chromium against `make airflow`'s own command (`python -m devstack airflow`): the DAG
graph, the grid with a finished run, and the trigger form with the DAG's params.

Each picture is taken only after the page's DOM shows what the picture claims (the DAG id,
every task id, a successful run, the three params), and each saved PNG is decoded and its
size checked. `make screenshots` runs this with SCREENSHOTS_DIR=docs/images, which is where
the committed pictures come from; otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.airflow import rest_api
from devstack.processes import free_port
from devstack.processes import wait_until as wait_for
from tests.conftest import REPO_ROOT
from tests.dags.tasks import ETL_TASKS
from tests.docs.browser import Browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DAG_ID = "totesys_etl"
TASK_IDS = list(ETL_TASKS)
PARAMS = ["full_refresh", "tables", "force_load"]
WIDTH, HEIGHT = 1600, 1000


@dataclass
class LocalAirflow:
    url: str

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        return rest_api(self.url, method, path, **kwargs)


def wait_until(condition: Any, timeout: float, what: str, log: Path) -> Any:
    """Polls through the api-server's restarts (a refused or half-answered request counts
    as not yet), and on timeout shows the tail of `make airflow`'s output."""

    def answered() -> Any:
        try:
            return condition()
        except (requests.RequestException, ValueError, KeyError):
            return None

    try:
        return wait_for(answered, timeout, what, every=3)
    except TimeoutError:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(
            f"timed out waiting for {what}; `make airflow` output ends:\n{tail}"
        ) from None


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    """`python -m devstack airflow` (what `make airflow` runs) in its own state dir and
    port, every run loading (so no freshness alert fails a run while the first interval
    waits for a 15-minute boundary) and one api-server worker; stopped with its whole process group, then the stack."""
    base = tmp_path_factory.mktemp("make-airflow")
    state = base / "stack"
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__TOTESYS__LOAD_EVERY_MINUTES": "5",
        # one api-server process: with the default four, on a busy 2-CPU machine, the worker
        # processes were seen dying and restarting through start-up; the UI needs only one
        "AIRFLOW__API__WORKERS": "1",
    }
    log = base / "make-airflow.log"
    command = [sys.executable, "-m", "devstack", "--state-dir", str(state)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "airflow"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: requests.get(f"{url}/api/v2/monitor/health", timeout=5).ok,
            900,
            "the Airflow API to answer",
            log,
        )
        found = LocalAirflow(url)
        wait_until(
            lambda: found.api("GET", f"/dags/{DAG_ID}")["dag_id"] == DAG_ID,
            300,
            "the DAG to be parsed",
            log,
        )
        yield found
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def finished_run(airflow: LocalAirflow, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A manual run with force_load, triggered through the REST API, finished successfully."""
    run = airflow.api(
        "POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"force_load": True}}
    )
    run_id: str = run["dag_run_id"]
    log = tmp_path_factory.getbasetemp() / "no-log"
    state = wait_until(
        lambda: (
            s
            if (s := airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"])
            in ("success", "failed")
            else None
        ),
        900,
        f"run {run_id} to finish",
        log,
    )
    if state != "success":
        instances = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
        states = {ti["task_id"]: ti["state"] for ti in instances["task_instances"]}
        raise AssertionError(f"run {run_id} {state}: {states}")
    return run_id


def png_size(data: bytes) -> tuple[int, int]:
    """Decode a PNG far enough to trust it: signature, IHDR, and the inflated image data
    has exactly one filter byte plus a row of pixels per line."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks: dict[bytes, list[bytes]] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        chunks.setdefault(kind, []).append(data[at + 8 : at + 8 + length])
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    pixels = zlib.decompress(b"".join(chunks[b"IDAT"]))
    assert depth == 8 and len(pixels) == height * (1 + width * channels)
    assert len(set(pixels[1 : 1 + width * channels * 50])) > 1 or len(set(pixels)) > 8, "blank"
    return width, height


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """docs/images under `make screenshots` (SCREENSHOTS_DIR), else a temporary directory."""
    chosen = os.environ.get("SCREENSHOTS_DIR")
    return REPO_ROOT / chosen if chosen else tmp_path / "screenshots"


def save(browser: Browser, shots: Path, name: str) -> None:
    data = browser.screenshot(shots / name)
    assert png_size(data) == (WIDTH, HEIGHT)
    assert (shots / name).read_bytes() == data


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser(tmp_path / "profile", WIDTH, HEIGHT) as opened:
        yield opened


def test_the_grid_shows_the_finished_run(
    airflow: LocalAirflow, finished_run: str, browser: Browser, shots: Path
) -> None:
    browser.open(f"{airflow.url}/dags/{DAG_ID}/runs/{finished_run}")
    browser.wait_for_text([DAG_ID, "Dag Run", "success", "manual", *TASK_IDS], timeout=120)
    # one grid cell per task of the run, each linking to its task instance
    cells = (
        "[...document.querySelectorAll('a[href*=\"/tasks/\"]')].filter(a =>"
        f" decodeURIComponent(a.getAttribute('href')).includes({json.dumps(finished_run)})).length"
    )
    assert browser.wait_for(f"{cells} >= {len(TASK_IDS)}", timeout=60)
    save(browser, shots, "airflow-grid.png")


def test_the_graph_shows_every_task_in_order(
    airflow: LocalAirflow, finished_run: str, browser: Browser, shots: Path
) -> None:
    page = f"{airflow.url}/dags/{DAG_ID}/runs/{finished_run}"
    browser.open(page)
    browser.wait_for_text([DAG_ID, *TASK_IDS], timeout=120)
    # The UI keeps the grid/graph choice per DAG in localStorage (JSON values); a page
    # opened with "graph" gives the graph its wide panel, as a returning user sees it.
    browser.evaluate(f"localStorage.setItem('dag_view-{DAG_ID}', JSON.stringify('graph'))")
    browser.open(page)
    # React Flow renders each node hidden until it has measured it, so a node's visible
    # text may be empty for a moment after the nodes exist: poll until every task shows.
    labels = "[...document.querySelectorAll('.react-flow__node')].map(n => n.innerText)"
    shown = browser.wait_for(
        f"(() => {{ const labels = {labels};"
        f" return {json.dumps(TASK_IDS)}.every(t => labels.some(l => l.includes(t)))"
        " && labels; })()",
        timeout=60,
    )
    assert all(any(task in label for label in shown) for task in TASK_IDS), shown
    assert (
        browser.wait_for("document.querySelectorAll('.react-flow__edge').length", 60)
        >= len(TASK_IDS) - 1
    )
    time.sleep(2)  # the graph fits itself into view once its layout settles
    save(browser, shots, "airflow-graph.png")


def test_the_trigger_form_offers_the_params(
    airflow: LocalAirflow, browser: Browser, shots: Path
) -> None:
    browser.open(f"{airflow.url}/dags/{DAG_ID}")
    browser.wait_for_text([DAG_ID, "Trigger"], timeout=120)
    browser.click_button("Trigger")
    browser.wait_for_text(["Trigger DAG", "Run Parameters", *PARAMS], timeout=60)
    save(browser, shots, "airflow-trigger.png")
