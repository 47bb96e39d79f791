"""What ships to MWAA: the tracked files of the DAG folder with etl inside, and a
byte-stable plugins.zip of the plugin modules only."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from deploy.mwaa.artifacts import dag_artifacts, plugins_zip, untracked_files
from deploy.mwaa.config import DeployError
from tests.deploy.mwaa.conftest import commit, git


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


PLUGIN = "totesys_task_metrics.py"


def test_plugins_zip_is_the_same_bytes_for_the_same_tree(project: Path) -> None:
    module = project / "plugins" / PLUGIN
    first = plugins_zip(project).body
    os.utime(module, (0, 0))  # a fresh checkout has other timestamps
    module.chmod(0o600)
    assert plugins_zip(project).body == first

    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == [PLUGIN]  # the plugin modules only: no README, no caches


def test_plugins_zip_changes_when_a_plugin_changes(project: Path) -> None:
    module = project / "plugins" / PLUGIN
    before = plugins_zip(project)
    module.write_text(module.read_text() + "\n# changed\n")
    commit(project, "a plugin changed")
    after = plugins_zip(project)
    assert after.md5 != before.md5
    archive = zipfile.ZipFile(io.BytesIO(after.body))
    assert archive.read(PLUGIN).endswith(b"# changed\n")


def test_only_tracked_files_are_shipped_and_untracked_ones_are_named(project: Path) -> None:
    (project / "dags" / "totesys_airflow" / "retired.py").write_text("# removed from git\n")
    commit(project, "retired.py for a while")
    git(project, "rm", "--cached", "--quiet", "dags/totesys_airflow/retired.py")
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "*.swp\n")
    git(project, "commit", "--quiet", "--all", "-m", "retired.py dropped from git; no swap files")
    # what an operator's working tree also holds, never committed
    (project / "etl" / ".env").write_text("TOTESYS_DB_URL=postgresql://u:s3cret@h/db\n")
    (project / "dags" / ".totesys_etl.py.swp").write_bytes(b"b0VIM 9.0")
    (project / "dags" / "stale_dag.py").write_text("# an old DAG nobody tracks\n")
    (project / "etl" / "ops" / "status.py").unlink()  # a deletion not yet committed

    keys = {artifact.key for artifact in dag_artifacts(project)}
    assert "dags/totesys_etl.py" in keys and "dags/etl/config.py" in keys
    for name in ("dags/etl/.env", "dags/.totesys_etl.py.swp", "dags/stale_dag.py",
                 "dags/totesys_airflow/retired.py", "dags/etl/ops/status.py"):  # fmt: skip
        assert name not in keys
    assert untracked_files(project) == [
        "dags/stale_dag.py",
        "dags/totesys_airflow/retired.py",
        "etl/.env",
    ]


def test_a_project_outside_git_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    with pytest.raises(DeployError, match="is not a git work tree"):
        dag_artifacts(tmp_path)


def test_plugins_zip_holds_only_plugin_modules_and_an_empty_plugins_folder_works(
    project: Path,
) -> None:
    git(project, "rm", "--quiet", f"plugins/{PLUGIN}")
    commit(project, "a plugins folder with only its README")
    readme = project / "plugins" / "README.md"
    empty = plugins_zip(project)
    # a marker Airflow does not load (not .py), never an archive without entries
    assert zipfile.ZipFile(io.BytesIO(empty.body)).namelist() == ["NO_PLUGINS.txt"]
    readme.write_text(readme.read_text() + "\nmore words\n")
    commit(project, "README edited")
    assert plugins_zip(project).md5 == empty.md5  # no new version, so no environment update
    git(project, "rm", "-r", "--quiet", "plugins")
    commit(project, "no plugins folder at all")
    assert plugins_zip(project).md5 == empty.md5
