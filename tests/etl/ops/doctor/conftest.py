"""The `pipeline` fixture: two clean cycles on fresh services."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.stack import StackEndpoints
from etl.config import Settings
from tests.etl.ops.doctor.pipeline import Pipeline


@pytest.fixture
def pipeline(stack: StackEndpoints, settings: Settings, s3: Any) -> Pipeline:
    return Pipeline(stack, settings, s3)
