"""Shared fixtures: databases, Temporal servers, workers with the real activities."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.brokers.base import Broker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, ensure_search_attributes, temporal_binary
from orchestrator.config import Settings
from tests.support import WorkerHarness, fresh_postgres

PG_ADMIN_URL = os.environ.get("TEO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    """The real PostgreSQL at 127.0.0.1:5432. Unreachable is a failure, never a skip."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} and is unreachable: {exc}")
    yield PG_ADMIN_URL


@pytest.fixture
def postgres_db(postgres_admin: str) -> Iterator[Database]:
    """A fresh, migrated database on the real server, dropped afterwards."""
    with fresh_postgres(postgres_admin) as db:
        yield db


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server per test: its clock can jump years once a result is
    awaited, which would make the next test's account data look stale."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(Settings()),  # the project's own, unencrypted
        test_server_existing_path=temporal_binary("temporal-test-server"),
    )
    # The time-skipping server hangs on workflows using unregistered search attributes.
    await ensure_search_attributes(env.client, env.client.namespace)
    yield env
    await env.shutdown()


@pytest.fixture
async def ts_client(time_skipping_env: WorkflowEnvironment) -> Client:
    return time_skipping_env.client


@pytest.fixture
def test_settings(tmp_path: Path) -> Settings:
    """Settings for tests: quick order polling and a short heartbeat, so a cancellation
    reaches a working order quickly."""
    return Settings(
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
        database_url=f"sqlite:///{tmp_path / 'orchestrator.db'}",
        order_poll_interval_s=0.05,
        order_heartbeat_s=2,
    )


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=64) as pool:
        yield pool


@pytest.fixture
def harness_factory(executor: ThreadPoolExecutor):
    def make(
        client: Client, db: Database, settings: Settings, broker: Broker | None = None
    ) -> WorkerHarness:
        return WorkerHarness(
            client=client, db=db, settings=settings, executor=executor, broker=broker
        )

    return make
