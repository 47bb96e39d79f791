"""The settings tables in docs/ are the declarations rendered: each sits between a pair of
marker comments naming the function of tests/docs/settings_tables.py that renders it, and
must equal that function's output.
A setting added, removed, renamed or re-described in its declaration fails here until the
tables are rendered again: `.venv/bin/python -m tests.docs.test_settings_tables` rewrites
them."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.docs.settings_tables import dag_options, deploy_flags, pipeline

RENDERERS: dict[str, Callable[[], str]] = {
    "pipeline": pipeline,
    "dag_options": dag_options,
    "deploy_flags": deploy_flags,
}
BLOCK = re.compile(
    r"(<!-- settings table: (?P<name>[\w.]+), rendered from the declarations -->\n)"
    r"(?P<table>.*?)\n(<!-- end of settings table -->)",
    re.DOTALL,
)
PAGES = {
    "docs/local.md": ["pipeline"],
    "docs/dag.md": ["dag_options"],
    "docs/deploy-mwaa.md": ["deploy_flags"],
}


def tables_in(page: Path) -> dict[str, str]:
    return {match["name"]: match["table"] for match in BLOCK.finditer(page.read_text())}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_settings_table_in_the_docs_is_its_declarations_rendered(page: str) -> None:
    tables = tables_in(REPO_ROOT / page)
    assert sorted(tables) == sorted(PAGES[page]), f"{page}: marker comments missing or extra"
    for name, table in tables.items():
        assert table == RENDERERS[name](), (
            f"{page}: the table of {name} differs from the declarations; render it again "
            "with `.venv/bin/python -m tests.docs.test_settings_tables`"
        )


def test_the_dag_and_deployer_tables_show_the_settings_they_share_with_the_pipeline() -> None:
    """Their rows for a shared setting come from its one declaration: the DAG's option
    names the CLI's variable, the deployer's flag carries the DAG's default."""
    assert "how far behind its watermark each extract re-reads" in pipeline()
    assert "| `overlap_seconds` | `900` | `INGEST_OVERLAP_SECONDS` |" in dag_options()
    assert "| `--alert-emails` | - | `data-team@terrifictotes.com` |" in deploy_flags()


def render_pages() -> None:
    """Rewrite every marked table from its declarations."""
    for page in PAGES:
        path = REPO_ROOT / page
        path.write_text(
            BLOCK.sub(lambda m: f"{m[1]}{RENDERERS[m['name']]()}\n{m[4]}", path.read_text())
        )


if __name__ == "__main__":
    argparse.ArgumentParser(
        prog="python -m tests.docs.test_settings_tables",
        description="Render the settings tables in docs/ again from the declarations.",
    ).parse_args()
    render_pages()
