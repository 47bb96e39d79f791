"""The CSV round-trips every value exactly, and drift in a file is named precisely."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from etl.config import Settings
from etl.csv_format import read_extract
from etl.errors import SchemaDriftError
from etl.ingest.run import ingest
from etl.storage import ObjectStore
from etl.tables import SOURCE_TABLES

NASTY = [
    "Comma, \"double quotes\", and O'Brien's apostrophe",
    "multi\nline\r\nvalue",
    "ünïcødé – 東京 – 😀",
    "",  # empty string, not NULL
    " leading and trailing spaces ",
    'a lone " quote',
    "\\N backslash-N is not NULL",
]


def test_nasty_values_round_trip_exactly(settings: Settings, s3: Any) -> None:
    url = settings.totesys_db_url.reveal()  # type: ignore[union-attr]
    with psycopg.connect(url) as conn:
        for address_id, value in enumerate(NASTY, start=1):
            conn.execute(
                "UPDATE address SET address_line_1 = %s, address_line_2 = %s, district = NULL,"
                " last_updated = '2022-11-03 14:20:49.001' WHERE address_id = %s",
                (value, value, address_id),
            )
        conn.execute("UPDATE address SET address_line_2 = '', district = NULL WHERE address_id = 8")
        expected = conn.execute(
            "SELECT address_id, address_line_1, address_line_2, district, last_updated FROM address"
        ).fetchall()
        prices = conn.execute(
            "SELECT sales_order_id, unit_price, created_at FROM sales_order"
        ).fetchall()

    result = ingest(settings, s3)

    store = ObjectStore(s3, settings.ingestion_bucket)
    address = read_extract(
        store.get_bytes(str(result.manifest["tables"]["address"]["file"])) or b"",
        SOURCE_TABLES["address"],
        "test",
    ).to_pylist()
    got = {
        (
            r["address_id"],
            r["address_line_1"],
            r["address_line_2"],
            r["district"],
            r["last_updated"],
        )
        for r in address
    }
    assert got == set(expected)
    by_id = {row[0]: row for row in got}
    assert by_id[8][2] == "" and by_id[8][3] is None, "'' and NULL stay distinct"
    assert by_id[1][4] == datetime(2022, 11, 3, 14, 20, 49, 1000), "milliseconds kept"
    sales = read_extract(
        store.get_bytes(str(result.manifest["tables"]["sales_order"]["file"])) or b"",
        SOURCE_TABLES["sales_order"],
        "test",
    ).to_pylist()
    assert {(r["sales_order_id"], r["unit_price"], r["created_at"]) for r in sales} == set(prices)
    assert all(isinstance(r["unit_price"], Decimal) for r in sales)


CURRENCY_HEADER = '"currency_id","currency_code","created_at","last_updated"\n'
GOOD_ROW = '"1","GBP","2022-11-03 14:20:49.962","2022-11-03 14:20:49.962"\n'


def test_a_well_formed_file_parses() -> None:
    table = read_extract((CURRENCY_HEADER + GOOD_ROW).encode(), SOURCE_TABLES["currency"], "x.csv")
    assert table.to_pylist()[0]["currency_code"] == "GBP"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '"currency_id","created_at","last_updated"\n',
            r"currency: missing column\(s\) currency_code in x\.csv",
        ),
        (
            CURRENCY_HEADER.replace("\n", ',"symbol"\n'),
            r"currency: unexpected column\(s\) symbol in x\.csv",
        ),
        (
            CURRENCY_HEADER + GOOD_ROW.replace('"1"', '"one"'),
            r"currency: column currency_id: Row #2: .*invalid value 'one' in x\.csv",
        ),
        (
            CURRENCY_HEADER + GOOD_ROW.replace('"GBP"', ""),
            r"currency\.currency_code: NULL in a NOT NULL column",
        ),
        (CURRENCY_HEADER + GOOD_ROW.replace('"1",', ""), r"currency: .*in x\.csv"),
    ],
)
def test_drift_in_a_file_names_table_and_column(content: str, message: str) -> None:
    with pytest.raises(SchemaDriftError, match=message):
        read_extract(content.encode(), SOURCE_TABLES["currency"], "x.csv")
