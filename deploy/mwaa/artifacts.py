"""What MWAA runs, built from the working tree: the DAG folder (with the `etl` package
inside it, since MWAA puts only `dags/` and `plugins.zip` on the path), a deterministic
plugins.zip and requirements.txt."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

DAGS_PREFIX = "dags"
PLUGINS_KEY = "plugins.zip"
REQUIREMENTS_KEY = "requirements.txt"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class Artifact:
    key: str
    body: bytes

    @property
    def md5(self) -> str:
        """What S3 reports as the ETag of a single-part upload to an SSE-S3 bucket."""
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not SKIPPED_PARTS.intersection(path.relative_to(root).parts)
        and path.suffix not in SKIPPED_SUFFIXES
    )


def dag_artifacts(project_root: Path) -> list[Artifact]:
    """dags/* at the top of the DAG folder and etl/ beside them as `dags/etl/...`."""
    found = [
        Artifact(
            f"{DAGS_PREFIX}/{path.relative_to(project_root / 'dags').as_posix()}", path.read_bytes()
        )
        for path in _files(project_root / "dags")
    ]
    found += [
        Artifact(f"{DAGS_PREFIX}/{path.relative_to(project_root).as_posix()}", path.read_bytes())
        for path in _files(project_root / "etl")
    ]
    return sorted(found, key=lambda artifact: artifact.key)


def plugins_zip(project_root: Path) -> Artifact:
    """The same plugins/ tree always gives the same bytes (fixed order, times and modes, and
    no compression, whose output can differ between zlib builds), so an unchanged tree is
    not uploaded from any machine and MWAA sees no new version."""
    root = project_root / "plugins"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in _files(root):
            entry = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_STORED
            entry.external_attr = 0o644 << 16
            entry.create_system = 3  # unix, whatever machine builds it
            archive.writestr(entry, path.read_bytes())
    return Artifact(PLUGINS_KEY, buffer.getvalue())


def requirements(project_root: Path) -> Artifact:
    return Artifact(REQUIREMENTS_KEY, (project_root / "requirements.txt").read_bytes())
