"""The documentation stays true to the repository: every command README.md, docs/ and spec/
show exists (each `python -m ...` answers `--help`, subcommands included; each `make ...`
target is in `make help`), every relative link and image resolves to a file in the
repository (and its #anchor to a heading there), and no tracked file points outside it."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PAGES = sorted(
    [
        REPO_ROOT / "README.md",
        *(REPO_ROOT / "docs").glob("*.md"),
        *(REPO_ROOT / "spec").glob("*.md"),
    ]
)
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
FENCE = re.compile(r"```.*?```", re.DOTALL)
PYTHON_COMMAND = re.compile(r"python3? -m ([a-z_][\w.]*)((?: [a-z][a-z0-9_-]*(?![\w/.]))*)")
MAKE_COMMAND = re.compile(r"(?:^|[\s`(])make ([a-z][a-z0-9_-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def code_of(page: Path) -> str:
    return "\n".join(CODE.findall(page.read_text()))


def documented_python_commands() -> list[tuple[str, ...]]:
    """(module, subcommand...) as the pages write them, each once."""
    found: set[tuple[str, ...]] = set()
    for page in PAGES:
        for module, words in PYTHON_COMMAND.findall(code_of(page)):
            found.add((module, *words.split()))
    return sorted(found)


def documented_make_targets() -> list[str]:
    return sorted({t for page in PAGES for t in MAKE_COMMAND.findall(code_of(page))})


def test_the_pages_document_commands() -> None:
    """The extraction finds what the pages are known to show, so the checks below check."""
    assert ("etl", "ingest") in documented_python_commands()
    assert ("devstack", "airflow") in documented_python_commands()
    assert {"demo", "test", "airflow", "screenshots"} <= set(documented_make_targets())


@pytest.mark.parametrize("command", documented_python_commands(), ids=" ".join)
def test_each_documented_python_command_exists(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


@cache
def make_help() -> str:
    # `make help` only greps the Makefile: it installs nothing and runs nothing else
    return subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.parametrize("target", documented_make_targets())
def test_each_documented_make_target_exists(target: str) -> None:
    assert re.search(rf"^  {re.escape(target)} ", make_help(), re.MULTILINE), make_help()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text()) if page.suffix == ".md" else ""
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def relative_links() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in PAGES
        for target in LINK.findall(CODE.sub("", page.read_text()))
        if not re.match(r"^[a-z]+:", target)
    ]


def test_the_pages_link_to_each_other() -> None:
    assert any(t == "docs/operations.md" for _, t in relative_links())


@pytest.mark.parametrize(
    ("page", "target"),
    relative_links(),
    ids=[f"{p.relative_to(REPO_ROOT)}->{t}" for p, t in relative_links()],
)
def test_each_relative_link_resolves_inside_the_repository(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.is_relative_to(REPO_ROOT), f"{target} leaves the repository"
    assert resolved.exists(), f"{target} does not exist"
    if anchor:
        assert anchor in anchors(resolved), f"{target}: no heading with anchor #{anchor}"


def test_no_tracked_file_refers_outside_the_repository() -> None:
    outside = "../" + "shared"  # spelled in two parts so this file does not name it
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    assert len(tracked) > 100
    offenders = [
        name.decode()
        for name in tracked
        if name
        and (REPO_ROOT / name.decode()).is_file()
        and outside.encode() in (REPO_ROOT / name.decode()).read_bytes()
    ]
    assert offenders == []


REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:etl|dags|deploy|devstack|plugins|tests|simulator|soak|benchmarks|spec)"
    r"/[\w/.-]*\w\.(?:py|sql|md|json))(?:::(\w+))?"
)


def documented_paths() -> list[tuple[str, str, str | None]]:
    """(page, path, test name) for every repository file a page names in code."""
    return sorted(
        {
            (page.name, match.group(1), match.group(2))
            for page in PAGES
            for match in REPO_PATH.finditer(code_of(page))
        },
        key=lambda found: (found[0], found[1], found[2] or ""),
    )


def test_the_pages_name_files() -> None:
    assert len(documented_paths()) > 50


@pytest.mark.parametrize(("page", "path", "test"), documented_paths())
def test_each_named_file_and_test_exists(page: str, path: str, test: str | None) -> None:
    """A page that names `etl/x.py` or `tests/y.py::test_z` names something that is there,
    so a moved module or a renamed test cannot leave a page pointing at nothing."""
    target = REPO_ROOT / path
    assert target.is_file(), f"{page} names {path}, which does not exist"
    if test is not None:
        assert re.search(rf"^(?:async )?def {test}\(", target.read_text(), re.M), (
            f"{page} names {path}::{test}, which is not a test in it"
        )
