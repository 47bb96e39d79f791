"""Fixtures for the pipeline: a seeded totesys database and an empty bucket per test."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from simulator.seed import SeedPlan, seed_totesys

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3(stack: StackEndpoints) -> Any:
    return stack.s3_client()


@pytest.fixture
def new_bucket(s3: Any, stack: StackEndpoints) -> Callable[[str], str]:
    def create(prefix: str) -> str:
        name = f"{prefix}-{next(_buckets)}"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        return name

    return create


@pytest.fixture
def source_url(make_database: Callable[[str], str]) -> str:
    """A freshly seeded totesys (small scale: about 1,000 rows in the busy tables)."""
    url = make_database("totesys")
    seed_totesys(url, SeedPlan(scale=0.03))
    return url


@pytest.fixture
def warehouse_url(make_database: Callable[[str], str]) -> str:
    """An empty database for a warehouse."""
    return make_database("warehouse")


@pytest.fixture
def settings(
    stack: StackEndpoints, source_url: str, warehouse_url: str, new_bucket: Callable[[str], str]
) -> Settings:
    env = {**stack.as_env(), "TOTESYS_DB_URL": source_url, "WAREHOUSE_DB_URL": warehouse_url}
    base = Settings.from_env(env)
    return replace(
        base, ingestion_bucket=new_bucket("ingestion"), processed_bucket=new_bucket("processed")
    )
