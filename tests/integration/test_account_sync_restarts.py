"""The account sync's schedule survives a worker restart and a Temporal server restart: on a
dev server of the test's own that persists to a file (``tests.dev_server``), the schedule
created at the first worker's start is still there after each restart and keeps firing, so
the accounts keep being synced (their state's time moves on), with no worker triggering it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleIntervalSpec

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow
from orchestrator.adapters.temporal import connect, ensure_search_attributes
from orchestrator.config import Settings
from orchestrator.services import sync
from tests.dev_server import DevServer
from tests.support import account, book, load, poll_until

pytestmark = pytest.mark.integration

EVERY_S = 2


async def connected(settings: Settings) -> Client:
    async def answers() -> Client | None:
        try:
            return await connect(settings)
        except RuntimeError:
            return None

    client: Client = await poll_until(answers, timeout_s=60, interval_s=0.3)
    await ensure_search_attributes(client, settings.temporal_namespace)
    return client


async def test_the_sync_schedule_survives_a_worker_restart_and_a_server_restart(
    tmp_path: Path, postgres_db: Database, harness_factory
) -> None:
    server = DevServer(tmp_path)
    server.start()
    settings = Settings.model_validate(
        {
            "temporal_address": server.address,
            "task_queue": f"it-restart-{os.getpid()}-{datetime.now(UTC):%H%M%S%f}",
            "database_url": postgres_db.url,
            "account_sync_every_s": EVERY_S,
        }
    )
    load(postgres_db, book(account("rs-1", broker="restart")))

    def synced_after(moment: datetime) -> bool:
        with postgres_db.transaction() as session:
            state = session.get(AccountStateRow, "rs-1")
            return state is not None and state.source == "reported" and state.as_of > moment

    try:
        client = await connected(settings)
        async with harness_factory(client, postgres_db, settings).running():
            first = await sync.start_account_sync(client, postgres_db, settings)
            assert await poll_until(lambda: synced_after(datetime.min.replace(tzinfo=UTC)))
        before_worker_restart = datetime.now(UTC)

        # A new worker, and nothing triggers a sync: only the schedule can.
        async with harness_factory(client, postgres_db, settings).running():
            await poll_until(lambda: synced_after(before_worker_restart), timeout_s=60)
        fired = (await client.get_schedule_handle(sync.schedule_id("restart")).describe()).info

        server.stop()
        server.start()
        before_server_restart = datetime.now(UTC)
        client = await connected(settings)
        described = await client.get_schedule_handle(sync.schedule_id("restart")).describe()
        async with harness_factory(client, postgres_db, settings).running():
            await poll_until(lambda: synced_after(before_server_restart), timeout_s=60)
        refired = (await client.get_schedule_handle(sync.schedule_id("restart")).describe()).info
        await client.get_schedule_handle(sync.schedule_id("restart")).delete()
    finally:
        server.stop()

    assert first == {"restart": "created, sync triggered"}
    # The server kept the schedule in its database file, interval and all ...
    assert described.schedule.spec.intervals == [
        ScheduleIntervalSpec(every=timedelta(seconds=EVERY_S))
    ]
    # ... and it fires again (a fresh sync was awaited above): more runs than before.
    assert refired.num_actions > fired.num_actions >= 2
