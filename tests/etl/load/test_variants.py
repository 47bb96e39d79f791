"""The known variants of the warehouse DDL, as spec/README.md documents them: each is built
in a real PostgreSQL and the loader's start-up check accepts it with exactly the documented
name map, and refuses it when any one pair of that map is left out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest

from etl.errors import SchemaDriftError
from etl.load.target import Target
from etl.names import WarehouseNames
from tests.conftest import REPO_ROOT

SPEC = REPO_ROOT / "spec"
MARKER = "<!-- variants:"


@dataclass(frozen=True)
class Variant:
    id: str
    sql: str
    name_map: str


def documented_variants() -> list[Variant]:
    """The rows of the table that follows the marker comment in spec/README.md."""
    lines = (SPEC / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append(cells)
    header, _rule, *body = rows
    assert header == ["id", "what differs", "SQL after warehouse.sql", "WAREHOUSE_NAME_MAP"]
    return [Variant(cells[0], cells[2].strip("`"), cells[3].strip("`")) for cells in body]


VARIANTS = documented_variants()


def test_the_documented_variants_are_the_known_ones() -> None:
    assert [v.id for v in VARIANTS] == ["V1", "V1-plural", "V2", "V3", "V4", "V6"]


def build(make_database: Callable[[str], str], variant: Variant) -> str:
    url = make_database("wh_" + variant.id.lower().replace("-", "_"))
    with psycopg.connect(url) as conn:
        conn.execute((SPEC / "warehouse.sql").read_bytes())
        if variant.sql:
            conn.execute(variant.sql.encode())
    return url


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_the_loader_accepts_each_variant_with_its_documented_name_map(
    make_database: Callable[[str], str], variant: Variant
) -> None:
    url = build(make_database, variant)
    pairs = [pair for pair in variant.name_map.split(",") if pair]

    with psycopg.connect(url) as conn:
        Target("public", WarehouseNames.parse(variant.name_map)).check(conn)
        for left_out in pairs:
            partial = ",".join(pair for pair in pairs if pair != left_out)
            canonical = left_out.partition("=")[0].replace(".", " ").split()[-1]
            with pytest.raises(SchemaDriftError, match=canonical):
                Target("public", WarehouseNames.parse(partial)).check(conn)
