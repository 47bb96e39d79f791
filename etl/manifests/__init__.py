"""The two contracts that carry work between stages, one module each.

- `etl.manifests.ingestion`: `_manifests/<batch_id>.json` in the ingestion bucket, written by
  ingest after a batch's CSV files, read by transform (and doctor, status, the soak).
- `etl.manifests.processed`: `_manifests/<batch_id>.json` in the processed bucket, written by
  transform after a batch's parquet files, read by load (and doctor, the soak).

Each is a TypedDict, so a manifest stays the plain JSON document it always was (readers in
other tools, Athena included, see no change) while mypy checks every field we touch. Each
carries a `format_version`. Manifests written before the field existed have the shape of
version 1, so a missing `format_version` reads as 1; every manifest written now states it.
A reader refuses any other version with one line naming the object and the versions it
understands: a newer writer's manifest read by an older reader must stop the pipeline, not
be half-understood.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from etl.errors import SchemaDriftError

FORMAT_VERSION = 1  # what this code writes
UNDERSTOOD_VERSIONS = (1,)  # what this code reads
UNVERSIONED = 1  # what a manifest without `format_version` (written before it existed) is


class ManifestFormatError(SchemaDriftError):
    """A manifest of a version we do not understand, or one missing fields of its version.
    Terminal: retrying reads the same object again."""


def check_document(
    document: Any,
    where: str,
    kind: str,
    required: Iterable[str],
    entry_required: Iterable[str],
) -> int:
    """The manifest's format version, after checking it is one we read and that the
    document and each of its table entries have the fields of that version."""
    if not isinstance(document, Mapping):
        raise ManifestFormatError(f"{where}: {kind} manifest is not a JSON object")
    version = document.get("format_version", UNVERSIONED)
    if version not in UNDERSTOOD_VERSIONS:
        understood = ", ".join(map(str, UNDERSTOOD_VERSIONS))
        raise ManifestFormatError(
            f"{where}: {kind} manifest format_version {version!r} is not understood"
            f" (this code reads version(s) {understood})"
        )
    missing = [name for name in required if name not in document]
    if missing:
        raise ManifestFormatError(f"{where}: {kind} manifest lacks field(s) {', '.join(missing)}")
    tables = document["tables"]
    if not isinstance(tables, Mapping):
        raise ManifestFormatError(f"{where}: {kind} manifest 'tables' is not a JSON object")
    entry_fields = list(entry_required)
    for table, entry in tables.items():
        gaps = [
            name for name in entry_fields if not isinstance(entry, Mapping) or name not in entry
        ]
        if gaps:
            raise ManifestFormatError(
                f"{where}: {kind} manifest entry {table!r} lacks field(s) {', '.join(gaps)}"
            )
    return int(version)
