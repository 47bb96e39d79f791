"""The settings object refuses names that are not plain identifiers, whichever edge fills it."""

from __future__ import annotations

import pytest

from etl.config import Settings
from etl.errors import ConfigError


@pytest.mark.parametrize("schema", ["public; DROP TABLE dim_staff", 'public"--', ""])
def test_a_warehouse_schema_that_is_not_a_plain_identifier_is_refused_at_construction(
    schema: str,
) -> None:
    # Found writing the bad-input checks: the CLI refused it in from_env, but the DAG builds
    # Settings directly from its [totesys] options, so ingest and transform wrote their
    # batches before load failed on it (composed as an identifier, never injected).
    with pytest.raises(ConfigError, match="WAREHOUSE_SCHEMA .* is not a plain identifier"):
        Settings(warehouse_schema=schema)


def test_from_env_still_defaults_a_blank_schema_to_public() -> None:
    assert Settings.from_env({"WAREHOUSE_SCHEMA": "  "}).warehouse_schema == "public"
    assert Settings.from_env({"WAREHOUSE_SCHEMA": "dw"}).warehouse_schema == "dw"
