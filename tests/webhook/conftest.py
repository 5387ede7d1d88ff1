"""Webhook tests: the app under uvicorn on 127.0.0.1, a real Temporal dev server (no worker:
workflows start and wait, which is all submission needs) and a SQLite database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import Settings
from orchestrator.domain import search_attributes
from orchestrator.interfaces.http.webhook import create_app
from tests.http_support import HMAC_KEY, SHARED_SECRET, serve_in_thread
from tests.support import account, book, load, uncorrelated_returns


@pytest.fixture(scope="module")
async def webhook_temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(Settings()),  # the project's own, unencrypted
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        ip="127.0.0.1",
    )
    yield env
    await env.shutdown()


@dataclass
class RunningWebhook:
    url: str
    db: Database
    settings: Settings


def webhook_settings(env: WorkflowEnvironment, db: Database, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "temporal_address": env.client.service_client.config.target_host,
        "task_queue": f"webhook-{uuid.uuid4().hex[:8]}",
        "database_url": db.url,
        "webhook_hmac_secret": HMAC_KEY,
        "webhook_shared_secret": SHARED_SECRET,
        "webhook_max_body_bytes": 4096,
        "webhook_rate_per_minute": 6000,
        "webhook_rate_burst": 1000,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def webhook_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'webhook.db'}")
    db.migrate()
    ids = ["acc-1", "acc-2"]
    load(db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    yield db
    db.dispose()


@pytest.fixture
def webhook(
    webhook_temporal: WorkflowEnvironment, webhook_db: Database
) -> Iterator[RunningWebhook]:
    settings = webhook_settings(webhook_temporal, webhook_db)
    with serve_in_thread(create_app(settings, db=webhook_db)) as url:
        yield RunningWebhook(url=url, db=webhook_db, settings=settings)
