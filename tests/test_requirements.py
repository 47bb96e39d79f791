"""What MWAA installs and what we install locally are the same pins."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

MWAA_CONSTRAINT = (
    '--constraint "https://raw.githubusercontent.com/apache/airflow/'
    'constraints-3.0.6/constraints-3.12.txt"'
)
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)")


def pins(path: str) -> dict[str, str]:
    found = {}
    for line in (REPO_ROOT / path).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(3)
    return found


def test_mwaa_requirements_carry_the_official_constraint_line() -> None:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert lines[0] == MWAA_CONSTRAINT


def test_every_requirement_is_pinned_exactly() -> None:
    for path in ("requirements.txt", "requirements/local.txt"):
        for line in (REPO_ROOT / path).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-c", "--constraint", "-r")):
                assert PIN.match(line), f"{path}: not pinned with ==: {line}"


def test_mwaa_runtime_pins_are_installed_locally() -> None:
    mwaa, local = pins("requirements.txt"), pins("requirements/local.txt")
    assert {name: local.get(name) for name in mwaa} == mwaa


def test_local_pins_agree_with_mwaa_constraints() -> None:
    constraints = pins("constraints/mwaa-airflow-3.0.6-constraints.txt")
    local = pins("requirements/local.txt")
    disagreeing = {
        n: (v, constraints[n]) for n, v in local.items() if n in constraints and constraints[n] != v
    }
    assert disagreeing == {}
    assert local["apache-airflow"] == "3.0.6"


def test_compatibility_venv_pins_agree_with_mwaa_3_3_1() -> None:
    constraints = pins("constraints/mwaa-airflow-3.3.1-constraints.txt")
    compat = pins("requirements/airflow-3.3.1.txt")
    disagreeing = {
        n: (v, constraints[n])
        for n, v in compat.items()
        if n in constraints and constraints[n] != v
    }
    assert disagreeing == {}
    assert compat["apache-airflow"] == "3.3.1"
