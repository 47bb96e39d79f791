"""The docs' settings tables, rendered from the declarations (etl.config's `Settings`, the
DAG's `DagConfig`, the deployer's `DeployConfig`): one function per table, named by the
marker comment around it in its page. Only the docs need them, so they live beside the
test that keeps the pages equal to them (tests/docs/test_settings_tables.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pydantic.fields import FieldInfo

from deploy.mwaa.config import DeployConfig
from etl.config import Settings, declarations, extra, option_form
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "dags"))

from totesys_airflow.config import DagConfig


def default_text(info: FieldInfo) -> str:
    """A setting's default as the docs show it."""
    if extra(info, "shown_default"):
        return str(extra(info, "shown_default"))
    if info.is_required():
        return "required"
    value = option_form(info.get_default(call_default_factory=True))
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "off" if not value else "on"
    if isinstance(value, tuple):
        value = ",".join(value)
    if isinstance(value, float):
        value = f"{value:g}"
    return f"`{value}`" if value not in ("", {}) else "empty"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, tuple("---" for _ in header), *rows]
    return "\n".join(f"| {' | '.join(line)} |" for line in lines)


def pipeline() -> str:
    """The pipeline's settings: what `python -m etl` reads (docs/local.md)."""
    rows = []
    for info in declarations(Settings).values():
        option = extra(info, "airflow_option")
        rows.append((f"`{extra(info, 'env')}`", default_text(info),
                     f"`{option}`" if option else "-", str(info.description)))  # fmt: skip
    return markdown_table(("variable", "default", "DAG option `[totesys]`", "meaning"), rows)


def dag_options() -> str:
    """The DAG's `[totesys]` options (docs/dag.md)."""
    rows = [
        (f"`{name}`", default_text(info),
         f"`{extra(info, 'env')}`" if extra(info, "env") else "-", str(info.description))
        for name, info in declarations(DagConfig).items()
    ]  # fmt: skip
    return markdown_table(("option", "default", "`python -m etl` variable", "meaning"), rows)


def deploy_flags() -> str:
    """The deployer's settings (docs/deploy-mwaa.md)."""
    rows = []
    for info in declarations(DeployConfig).values():
        if extra(info, "flag"):
            env = extra(info, "env")
            rows.append((f"`{extra(info, 'flag')}`", f"`{env}`" if env else "-",
                         default_text(info), str(info.description)))  # fmt: skip
    return markdown_table(("flag", "environment fallback", "default", "meaning"), rows)
