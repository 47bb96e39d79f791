"""Each declared warehouse table has exactly one builder, and remodel derives from the
declarations what the pipeline has always done: which sources it keeps a state of, which
it reads in chunks, and what each fact source feeds."""

from __future__ import annotations

import inspect
from collections import Counter

from etl.transform.remodel import (
    BUILDER_MODULES,
    BUILDERS,
    FACT_SOURCES,
    ROW_WISE_SOURCES,
    STATEFUL_TABLES,
    WHOLE_DIMENSIONS,
)
from etl.warehouse import WAREHOUSE_TABLES


def builder_functions() -> dict[str, object]:
    """Every function named like a warehouse table in the builder modules."""
    return {
        f"{module_name}.{name}": function
        for module_name, module in BUILDER_MODULES.items()
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith(("dim_", "fact_")) and function.__module__ == module.__name__
    }


def test_every_table_has_its_own_builder_and_every_builder_a_table() -> None:
    declared = Counter(table.builder for table in WAREHOUSE_TABLES.values())
    assert [name for name, count in declared.items() if count > 1] == []
    assert set(declared) == set(builder_functions())
    assert set(BUILDERS) == set(WAREHOUSE_TABLES)
    for name, table in WAREHOUSE_TABLES.items():
        assert BUILDERS[name] is builder_functions()[table.builder], name


def test_a_builder_takes_one_argument_per_declared_source_and_the_reject_log() -> None:
    for name, table in WAREHOUSE_TABLES.items():
        if table.sources:
            parameters = list(inspect.signature(BUILDERS[name]).parameters)
            assert len(parameters) == len(table.sources) + 1 and parameters[-1] == "rejects", name


def test_remodel_derives_what_it_always_did() -> None:
    assert sorted(STATEFUL_TABLES) == ["address", "counterparty", "department", "staff"]
    assert ROW_WISE_SOURCES == ("transaction", "sales_order", "purchase_order", "payment")
    assert {source: target for source, (target, _) in FACT_SOURCES.items()} == {
        "sales_order": "fact_sales_order",
        "purchase_order": "fact_purchase_orders",
        "payment": "fact_payment",
    }
    assert sorted(t.name for t in WHOLE_DIMENSIONS) == [
        "dim_counterparty", "dim_currency", "dim_design", "dim_location", "dim_payment_type",
        "dim_staff",
    ]  # fmt: skip
