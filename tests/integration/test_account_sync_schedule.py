"""The account sync's schedules on the real dev server: one per broker with accounts in the
book, created as the worker creates them at start (updated when they exist), each starting
``AccountSyncWorkflow`` for its broker, whose run writes the accounts' state from the broker;
a worker's start triggers one sync at once; a sync slower than the interval is not piled up
(overlap SKIP, a short catch-up window). The schedule surviving restarts of the worker and of
the server: ``test_account_sync_restarts.py``."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
)
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow
from orchestrator.services import sync
from tests.integration.test_end_to_end import dev_settings
from tests.support import account, book, load, poll_until

pytestmark = pytest.mark.integration


async def test_a_schedule_per_broker_is_created_at_start_and_its_run_syncs_the_accounts(
    dev_server: WorkflowEnvironment, postgres_db: Database, harness_factory
) -> None:
    # Broker names of this test alone: the dev server is shared by the session.
    first, second = (f"it-sync-{uuid.uuid4().hex[:8]}" for _ in range(2))
    load(postgres_db, book(account("s-1", broker=first), account("s-2", broker=second)))
    settings = dev_settings(dev_server, postgres_db, account_sync_every_s=3600)
    client = dev_server.client
    try:
        created = await sync.ensure_schedules(client, postgres_db, settings)
        again = await sync.ensure_schedules(client, postgres_db, settings)
        described = await client.get_schedule_handle(sync.schedule_id(first)).describe()
        async with harness_factory(client, postgres_db, settings).running():
            await client.get_schedule_handle(sync.schedule_id(first)).trigger()

            def synced() -> bool:
                with postgres_db.transaction() as session:
                    state = session.get(AccountStateRow, "s-1")
                    return state is not None and state.source == "reported"

            assert await poll_until(synced, timeout_s=60)
    finally:
        for broker in (first, second):
            await client.get_schedule_handle(sync.schedule_id(broker)).delete()

    assert created == {first: "created", second: "created"}
    assert again == {first: "updated", second: "updated"}
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "AccountSyncWorkflow"
    assert action.task_queue == settings.task_queue


async def test_a_worker_start_syncs_each_broker_at_once_through_its_schedule(
    dev_server: WorkflowEnvironment, postgres_db: Database, harness_factory
) -> None:
    broker = f"it-start-{uuid.uuid4().hex[:8]}"
    load(postgres_db, book(account("st-1", broker=broker)))
    # An hour between runs: only the start's trigger can sync the account during the test.
    settings = dev_settings(dev_server, postgres_db, account_sync_every_s=3600)
    client = dev_server.client
    handle = client.get_schedule_handle(sync.schedule_id(broker))

    def synced() -> bool:
        with postgres_db.transaction() as session:
            state = session.get(AccountStateRow, "st-1")
            return state is not None and state.source == "reported"

    try:
        async with harness_factory(client, postgres_db, settings).running():
            done = await sync.start_account_sync(client, postgres_db, settings)
            assert await poll_until(synced, timeout_s=60)
        described = await handle.describe()
    finally:
        await handle.delete()

    assert done == {broker: "created, sync triggered"}
    assert described.info.num_actions == 1
    [action] = described.info.recent_actions
    assert isinstance(action.action, ScheduleActionExecutionStartWorkflow)
    assert action.action.workflow_id.startswith(sync.schedule_id(broker))
    # A sync slower than its interval does not pile runs up: the next is skipped.
    assert described.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    assert described.schedule.policy.catchup_window == sync.CATCHUP_WINDOW
