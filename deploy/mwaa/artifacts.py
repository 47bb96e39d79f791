"""What MWAA runs, built from the working tree: the DAG folder (with the `etl` package
inside it, since MWAA puts only `dags/` and `plugins.zip` on the path), a deterministic
plugins.zip and requirements.txt.

Only files git tracks are shipped (their working-tree content): an `etl/.env`, an editor's
swap file or a stale module left in `dags/` stays on the machine. Untracked files that git
does not ignore are named, so a module someone forgot to `git add` is noticed.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deploy.mwaa.config import DeployError

DAGS_PREFIX = "dags"
PLUGINS_KEY = "plugins.zip"
REQUIREMENTS_KEY = "requirements.txt"
COMMIT_KEY = "deployed-commit.txt"  # beside them: which commit the environment runs
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo", ".swp", ".swo"}
SHIPPED_FOLDERS = ("dags", "etl", "plugins")
PLUGIN_SUFFIXES = {".py"}  # what Airflow's plugin manager imports; a README stays out
NO_PLUGINS_MARKER = "NO_PLUGINS.txt"
NO_PLUGINS_TEXT = b"plugins/ holds no Airflow plugin module yet; Airflow loads nothing from here.\n"


@dataclass(frozen=True)
class Artifact:
    key: str
    body: bytes

    @property
    def md5(self) -> str:
        """What S3 reports as the ETag of a single-part upload to an SSE-S3 bucket."""
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest()


def _git_files(project_root: Path, folder: str, *selection: str) -> list[str]:
    """Paths (relative to the project root) that `git ls-files` lists under `folder`."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(project_root), "ls-files", "-z", *selection, "--", folder],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        raise DeployError(
            f"{project_root} is not a git work tree (or git is missing): only files git "
            "tracks are shipped"
        ) from None
    return sorted(name for name in listed.split("\0") if name)


def _files(project_root: Path, folder: str) -> list[Path]:
    """Tracked files under `folder` that exist (a deletion not yet committed is gone)."""
    found = (project_root / name for name in _git_files(project_root, folder, "--cached"))
    return sorted(
        path
        for path in found
        if path.is_file()
        and not SKIPPED_PARTS.intersection(path.relative_to(project_root).parts)
        and path.suffix not in SKIPPED_SUFFIXES
    )


def untracked_files(project_root: Path) -> list[str]:
    """Files in the shipped folders that git neither tracks nor ignores: not shipped."""
    return [
        name
        for folder in SHIPPED_FOLDERS
        for name in _git_files(project_root, folder, "--others", "--exclude-standard")
    ]


def dag_artifacts(project_root: Path) -> list[Artifact]:
    """dags/* at the top of the DAG folder and etl/ beside them as `dags/etl/...`."""
    found = [
        Artifact(
            f"{DAGS_PREFIX}/{path.relative_to(project_root / 'dags').as_posix()}", path.read_bytes()
        )
        for path in _files(project_root, "dags")
    ]
    found += [
        Artifact(f"{DAGS_PREFIX}/{path.relative_to(project_root).as_posix()}", path.read_bytes())
        for path in _files(project_root, "etl")
    ]
    return sorted(found, key=lambda artifact: artifact.key)


def plugins_zip(project_root: Path) -> Artifact:
    """The plugin modules of plugins/ (helper code lives in dags/, a README stays out). The
    same modules always give the same bytes (fixed order, times and modes, and no
    compression, whose output can differ between zlib builds), so an unchanged tree is not
    uploaded from any machine and MWAA sees no new version.

    With no plugin module the archive holds one marker file, which Airflow does not load:
    an archive with no entry at all is one that some unzip tools answer with an error, and
    an environment that had a plugins.zip must be given a new one (MWAA cannot unset it)."""
    root = project_root / "plugins"
    modules = [path for path in _files(project_root, "plugins") if path.suffix in PLUGIN_SUFFIXES]
    entries = [(path.relative_to(root).as_posix(), path.read_bytes()) for path in modules]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in entries or [(NO_PLUGINS_MARKER, NO_PLUGINS_TEXT)]:
            entry = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_STORED
            entry.external_attr = 0o644 << 16
            entry.create_system = 3  # unix, whatever machine builds it
            archive.writestr(entry, body)
    return Artifact(PLUGINS_KEY, buffer.getvalue())


def uncommitted_changes(project_root: Path) -> list[str]:
    """Tracked files of what ships whose working-tree content differs from the commit (they
    would ship as they are, under a commit that does not hold them)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(project_root), "status", "--porcelain=v1", "-z",
             "--untracked-files=no", "--", *SHIPPED_FOLDERS, REQUIREMENTS_KEY],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        raise DeployError(f"{project_root} is not a git work tree (or git is missing)") from None
    return sorted(entry[3:] for entry in listed.split("\0") if len(entry) > 3)


def commit_record(project_root: Path, dirty: bool) -> Artifact:
    """The commit deployed, uploaded beside plugins.zip: what runs can be traced to it."""
    try:
        head = subprocess.run(["git", "-C", str(project_root), "rev-parse", "HEAD"],
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        raise DeployError(f"{project_root} has no commit yet: commit what you deploy") from None
    note = "with uncommitted changes (--allow-dirty)\n" if dirty else ""
    return Artifact(COMMIT_KEY, f"{head}\n{note}".encode())


def requirements(project_root: Path) -> Artifact:
    return Artifact(REQUIREMENTS_KEY, (project_root / "requirements.txt").read_bytes())
