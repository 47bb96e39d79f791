"""The settings tables in docs/ are the declarations rendered: each sits between a pair of
marker comments naming the function that renders it, and must equal that function's output.
A setting added, removed, renamed or re-described in its declaration fails here until the
tables are rendered again: `.venv/bin/python -m tests.docs.test_settings_tables` rewrites
them."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.mwaa.config import flags_table
from etl.config import settings_table
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "dags"))

from totesys_airflow.config import options_table

RENDERERS: dict[str, Callable[[], str]] = {
    "etl.config.settings_table": settings_table,
    "totesys_airflow.config.options_table": options_table,
    "deploy.mwaa.config.flags_table": flags_table,
}
BLOCK = re.compile(
    r"(<!-- settings table: (?P<name>[\w.]+), rendered from the declarations -->\n)"
    r"(?P<table>.*?)\n(<!-- end of settings table -->)",
    re.DOTALL,
)
PAGES = {
    "docs/local.md": ["etl.config.settings_table"],
    "docs/dag.md": ["totesys_airflow.config.options_table"],
    "docs/deploy-mwaa.md": ["deploy.mwaa.config.flags_table"],
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
    assert "how far behind its watermark each extract re-reads" in settings_table()
    assert "| `overlap_seconds` | `900` | `INGEST_OVERLAP_SECONDS` |" in options_table()
    assert "| `--alert-emails` | - | `data-team@terrifictotes.com` |" in flags_table()


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
