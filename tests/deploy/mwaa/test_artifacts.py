"""What ships to MWAA: the DAG folder with etl inside, and a byte-stable plugins.zip."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from deploy.mwaa.artifacts import dag_artifacts, plugins_zip


def test_the_dag_folder_carries_the_etl_package_and_no_caches(project: Path) -> None:
    (project / "etl" / "__pycache__").mkdir(exist_ok=True)
    (project / "etl" / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"\0")
    keys = [artifact.key for artifact in dag_artifacts(project)]

    assert "dags/totesys_etl.py" in keys
    assert "dags/totesys_airflow/alerts.py" in keys  # the DAG's helpers travel with it
    assert "dags/etl/transform/batch.py" in keys
    expected_etl = {
        f"dags/{path.relative_to(project).as_posix()}" for path in (project / "etl").rglob("*.py")
    }
    assert expected_etl <= set(keys)
    assert not [key for key in keys if "__pycache__" in key or key.endswith(".pyc")]
    assert keys == sorted(keys)


def a_plugin(project: Path) -> Path:
    """A plugin module in the project copy: what plugins/ holds does not change how it zips."""
    module = project / "plugins" / "team_plugin" / "listener.py"
    module.parent.mkdir(parents=True, exist_ok=True)
    (module.parent / "__init__.py").write_text("")
    module.write_text("from airflow.plugins_manager import AirflowPlugin\n")
    return module


def test_plugins_zip_is_the_same_bytes_for_the_same_tree(project: Path) -> None:
    module = a_plugin(project)
    first = plugins_zip(project).body
    os.utime(module, (0, 0))  # a fresh checkout has other timestamps
    module.chmod(0o600)
    assert plugins_zip(project).body == first

    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "team_plugin/listener.py" in names and "team_plugin/__init__.py" in names
    assert not [name for name in names if "__pycache__" in name]


def test_plugins_zip_changes_when_a_plugin_changes(project: Path) -> None:
    module = a_plugin(project)
    before = plugins_zip(project)
    module.write_text(module.read_text() + "\n# changed\n")
    after = plugins_zip(project)
    assert after.md5 != before.md5
    archive = zipfile.ZipFile(io.BytesIO(after.body))
    assert archive.read("team_plugin/listener.py").endswith(b"# changed\n")
