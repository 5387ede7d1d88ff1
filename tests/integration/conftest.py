"""Integration tier: the real Temporal dev server (the ``temporal`` CLI) and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from orchestrator import search_attributes
from orchestrator.temporal import temporal_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        ip="127.0.0.1",
    )
    yield env
    await env.shutdown()
