"""The floor plan of etl/ (docs/architecture.md): the core at the package root, the three
stages above it, operations above them, and the CLI on top. An import may go down a floor or
stay on its own, never up: the core must stay usable without any stage, a stage without ops."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

ETL = REPO_ROOT / "etl"
FLOORS = {"core": 0, "ingest": 1, "transform": 1, "load": 1, "ops": 2, "cli": 3}
CORE_PACKAGES = {"manifests"}
MAX_ROOT_MODULES = 14


def floor_of(module: str) -> str:
    """The floor of a dotted `etl...` module name."""
    parts = module.split(".")
    if parts == ["etl", "__main__"]:
        return "cli"
    if len(parts) > 1 and parts[1] in FLOORS and parts[1] not in CORE_PACKAGES:
        return parts[1]
    return "core"


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every etl module a file imports (`from etl import x` counts as etl.x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("etl"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("etl"):
            found.add(node.module)
            if node.module in ("etl", "etl.ops", "etl.ingest", "etl.transform", "etl.load"):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_import_runs_up_a_floor() -> None:
    upward = []
    for path in sorted(ETL.rglob("*.py")):
        importer = module_name(path)
        for imported in imported_modules(path):
            if FLOORS[floor_of(imported)] > FLOORS[floor_of(importer)]:
                upward.append(f"{importer} -> {imported}")
    assert upward == []


def test_the_floors_are_what_the_test_thinks() -> None:
    assert floor_of("etl.names") == "core" and floor_of("etl.manifests.processed") == "core"
    assert floor_of("etl.load.loader") == "load" and floor_of("etl.ops.doctor") == "ops"
    assert floor_of("etl.__main__") == "cli"
    assert FLOORS[floor_of("etl.ops.cycle")] > FLOORS[floor_of("etl.ingest.run")]


def test_the_core_stays_small() -> None:
    root = [p.name for p in ETL.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(root) <= MAX_ROOT_MODULES, sorted(root)


def test_etl_imports_nothing_of_the_dag_the_deployment_or_the_dev_stack() -> None:
    outside = ("dags", "deploy", "devstack", "plugins", "totesys_airflow")
    for path in sorted(ETL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            assert not [n for n in names if n.split(".")[0] in outside], path
