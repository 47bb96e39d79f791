"""Airflow for the DAG tests: its own home and metadata database (in PostgreSQL, as on MWAA),
and a stack of its own (the DAG's connections name fixed databases and buckets)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.airflow import airflow_env, migrate
from devstack.stack import StackEndpoints, local_stack
from tests.conftest import REPO_ROOT

# Airflow reads its configuration when first imported: point it here before any test does.
_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
sys.path.insert(0, str(REPO_ROOT / "dags"))


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEndpoints]:
    with local_stack(tmp_path_factory.mktemp("airflow-stack")) as endpoints:
        yield endpoints


@pytest.fixture(scope="module")
def airflow_home(airflow_stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow-home")
    migrate(airflow_env(airflow_stack, home))
    return home
